"""The 22 augmented views behind AnoCLIP's image score (anoclip.md §3 "Image score").

Order: the image; 8 small rotations; 8 translations; a horizontal flip; a grayscale
view; rotations by 90, 180 and 270 degrees. Rotations and translations resample with
``affine_grid``/``grid_sample`` (align_corners=True, reflection padding). The official
code takes the grayscale view on the already normalised tensor; ``grayscale_on_raw``
takes it on the image before normalisation instead (the ``default`` preset).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SMALL_ROTATIONS: tuple[float, ...] = tuple(
    math.pi * k for k in (-1 / 4, -3 / 16, -1 / 8, -1 / 16, 1 / 16, 1 / 8, 3 / 16, 1 / 4)
)
TRANSLATIONS: tuple[tuple[float, float], ...] = (
    (0.2, 0.2),
    (-0.2, 0.2),
    (-0.2, -0.2),
    (0.2, -0.2),
    (0.1, 0.1),
    (-0.1, 0.1),
    (-0.1, -0.1),
    (0.1, -0.1),
)
GRAY_WEIGHTS = (0.299, 0.587, 0.114)
NUM_VIEWS = 1 + len(SMALL_ROTATIONS) + len(TRANSLATIONS) + 1 + 1 + 3


def _affine(images: torch.Tensor, matrix: list[list[float]]) -> torch.Tensor:
    theta = torch.tensor(matrix, dtype=torch.float32, device=images.device)
    theta = theta.unsqueeze(0).expand(images.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=True)
    return F.grid_sample(images.float(), grid, padding_mode="reflection", align_corners=True).to(
        images.dtype
    )


def _gray(images: torch.Tensor) -> torch.Tensor:
    weights = torch.tensor(GRAY_WEIGHTS, dtype=images.dtype, device=images.device)
    gray = (images * weights.view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
    return gray.expand(-1, 3, -1, -1)


def augmented_views(
    images: torch.Tensor,
    mean: tuple[float, float, float] | None = None,
    std: tuple[float, float, float] | None = None,
) -> torch.Tensor:
    """Stack the 22 views of normalised images ``(B, 3, H, W)`` as ``(B, 22, 3, H, W)``.

    With ``mean`` and ``std`` given, the grayscale view is computed on the un-normalised
    image and normalised again; without them, on the normalised tensor (official).
    """
    views = [images]
    for angle in SMALL_ROTATIONS:
        cos, sin = math.cos(angle), math.sin(angle)
        views.append(_affine(images, [[cos, -sin, 0.0], [sin, cos, 0.0]]))
    for dx, dy in TRANSLATIONS:
        views.append(_affine(images, [[1.0, 0.0, dx], [0.0, 1.0, dy]]))
    views.append(torch.flip(images, dims=[-1]))
    if mean is not None and std is not None:
        m = torch.tensor(mean, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        s = torch.tensor(std, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        views.append((_gray(images * s + m) - m) / s)
    else:
        views.append(_gray(images))
    for k in (1, 2, 3):
        views.append(torch.rot90(images, k, dims=(-2, -1)))
    return torch.stack(views, dim=1)
