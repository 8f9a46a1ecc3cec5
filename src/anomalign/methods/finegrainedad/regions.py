"""Language-guided progressive region aggregation and region weights (finegrainedad.md §3.1-3.2).

Tokens are clustered on their cosine similarities to the normal prompt features of
the components and the background (not on raw visual features), with DPC-kNN in two
stages: foreground/background, then E+1 regions inside the foreground. Each prompt is
matched to the region whose mean visual feature is closest, and its region weight is
``1 + boost`` there and 1 elsewhere, average-pooled to the patch grid.

The density tie-break noise of DPC-kNN comes from a seeded generator, so the
aggregation is deterministic.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def dpc_knn(
    x: torch.Tensor,
    n_clusters: int,
    k: int,
    token_mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Density-peak clustering with kNN density of ``(N, C)`` points -> ``(N,)`` labels.

    ``dist = cdist / sqrt(C)``; ``density = exp(-mean(kNN dist^2))`` (+1e-6 noise);
    delta = distance to the nearest denser point; centres = top ``n_clusters`` of
    ``delta * density``; every point joins its nearest centre. Masked-out points
    (``token_mask`` False) do not count as neighbours and have zero density.
    """
    n, channels = x.shape
    n_clusters = max(1, min(int(n_clusters), n))
    dist = torch.cdist(x.float()[None], x.float()[None])[0] / math.sqrt(channels)
    if token_mask is not None:
        keep = token_mask.bool()
        dist_for_density = torch.where(keep[None, :], dist, dist.max() + 1)
    else:
        dist_for_density = dist
    k = max(1, min(int(k), n))
    nearest = dist_for_density.topk(k, dim=-1, largest=False).values
    density = (-(nearest**2).mean(dim=-1)).exp()
    noise = torch.rand(n, generator=generator).to(density.device, density.dtype)
    density = density + noise * 1e-6
    if token_mask is not None:
        density = density * token_mask.to(density.dtype)
    denser = density[None, :] > density[:, None]
    dist_max = dist_for_density.max()
    delta = torch.where(denser, dist_for_density, dist_max).min(dim=-1).values
    centres = (delta * density).topk(n_clusters).indices
    labels = dist[centres].argmin(dim=0)
    labels[centres] = torch.arange(n_clusters, device=labels.device)
    return labels


def stage_two_k(n_clusters: int) -> int:
    """The code's kNN size for the second stage: 5, or min(3, n//2) when 5 > n."""
    return 5 if n_clusters >= 5 else max(1, min(3, n_clusters // 2))


def aggregate_regions(
    tokens: torch.Tensor,
    normal_features: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Two-stage aggregation of one image's tokens -> ``(N,)`` region labels in 0..E.

    Args:
        tokens: ``(N, D)`` normalised projected patch tokens (the tiled, fine grid).
        normal_features: ``(E+1, D)`` normal prompt features, components then background.
        generator: seeded source of the density tie-break noise.
    """
    x = tokens.float() @ normal_features.float().T  # language features, (N, E+1)
    n_regions = normal_features.shape[0]
    # Stage 1: foreground / background (the code's CTM k=8 exceeds 2 clusters: k=1).
    stage1 = dpc_knn(x, 2, 1, generator=generator)
    background = normal_features[-1].float()
    scores = []
    for label in range(2):
        members = tokens[stage1 == label]
        scores.append(float(members.float().mean(0) @ background) if len(members) else -math.inf)
    bg_label = int(torch.tensor(scores).argmax())
    foreground = stage1 != bg_label
    if not bool(foreground.any()):
        foreground = torch.ones_like(foreground)
    # Stage 2: E+1 regions, background tokens masked out of the density.
    labels = dpc_knn(x, n_regions, stage_two_k(n_regions), foreground, generator)
    labels = torch.where(foreground, labels, labels[0])
    return labels


def match_regions(
    tokens: torch.Tensor, labels: torch.Tensor, normal_features: torch.Tensor
) -> torch.Tensor:
    """For each of the E+1 normal prompts, the region whose mean token is closest."""
    n_regions = int(labels.max()) + 1
    means = torch.stack(
        [
            tokens[labels == r].float().mean(0)
            if bool((labels == r).any())
            else torch.zeros(tokens.shape[-1], device=tokens.device)
            for r in range(n_regions)
        ]
    )
    sims = F.normalize(normal_features.float(), dim=-1) @ F.normalize(means, dim=-1).T
    return sims.argmax(dim=1)


def region_weights(
    labels: torch.Tensor,
    matched: torch.Tensor,
    fine_grid: tuple[int, int],
    pool: int,
    boost: float = 1.5,
) -> torch.Tensor:
    """``(E+1, N_patch)`` weights: 1, plus ``boost`` on the matched region, pooled ``pool``x."""
    grid = labels.view(1, 1, *fine_grid)
    masks = (grid == matched.view(-1, 1, 1, 1)).float()  # (E+1, 1, H, W)
    weights = 1.0 + boost * masks
    if pool > 1:
        weights = F.avg_pool2d(weights, pool)
    return weights.flatten(1)
