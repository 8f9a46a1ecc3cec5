"""WinCLIP / WinCLIP+ scoring (Jeong et al. 2023, §3): window text scores, harmonic
aggregation, the few-shot reference association and the (zero-shot + few-shot) / 2 fusion.

Follows anomalib's ``WinClipModel`` numerics (the peer implementation the comparison
script checks against): text embeddings are the mean of the raw prompt embeddings of each
class; scores are ``softmax(cos / 0.07)`` of the anomalous class; the zero-shot map is the
harmonic mean over the image-score broadcast and each scale's harmonically aggregated
window scores; the few-shot map is the mean over the patch-level and each scale's
aggregated association scores ``min (1 - cos) / 2``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

TEMPERATURE = 0.07


def class_scores(embeddings: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """``(..., D)`` embeddings, ``(2, D)`` [normal, anomalous] text -> anomalous probability."""
    cosine = F.normalize(embeddings.float(), dim=-1) @ F.normalize(text.float(), dim=-1).T
    return torch.softmax(cosine / TEMPERATURE, dim=-1)[..., 1]


def coverage(windows: torch.Tensor, patches: int) -> torch.Tensor:
    """``(patches, n_windows)`` 0/1 matrix: which windows contain each patch."""
    matrix = torch.zeros(patches, windows.shape[0])
    matrix[windows.T.reshape(-1), torch.arange(windows.shape[0]).repeat(windows.shape[1])] = 1.0
    return matrix


def harmonic_aggregation(scores: torch.Tensor, cover: torch.Tensor) -> torch.Tensor:
    """``(B, n_windows)`` window scores -> ``(B, N)``: per patch, the harmonic mean of the
    scores of the windows that contain it (0 where a score is 0 or no window covers it)."""
    inverse = (1.0 / scores.float()) @ cover.T.to(scores.device)  # (B, N)
    counts = cover.sum(dim=1).to(scores.device)
    return torch.nan_to_num(counts / inverse, posinf=0.0, nan=0.0)


def association(embeddings: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``(B, n, D)`` queries, ``(M, D)`` references -> ``(B, n)`` ``min (1 - cos) / 2``."""
    cosine = F.normalize(embeddings.float(), dim=-1) @ F.normalize(reference.float(), dim=-1).T
    return (1.0 - cosine.max(dim=-1).values) / 2.0


def zero_shot_map(
    image_scores: torch.Tensor,
    window_embeddings: list[torch.Tensor],
    covers: list[torch.Tensor],
    text: torch.Tensor,
) -> torch.Tensor:
    """``(B, N)`` harmonic mean over the full-image scale and every window scale."""
    per_scale = [image_scores[:, None].expand(-1, covers[0].shape[0])]
    for embeddings, cover in zip(window_embeddings, covers, strict=True):
        per_scale.append(harmonic_aggregation(class_scores(embeddings, text), cover))
    return len(per_scale) / (1.0 / torch.stack(per_scale)).sum(dim=0)


def few_shot_map(
    patches: torch.Tensor,
    window_embeddings: list[torch.Tensor],
    reference_patches: torch.Tensor,
    reference_windows: list[torch.Tensor],
    covers: list[torch.Tensor],
) -> torch.Tensor:
    """``(B, N)`` mean over the patch scale and every window scale of the association."""
    per_scale = [association(patches, reference_patches)]
    for embeddings, reference, cover in zip(
        window_embeddings, reference_windows, covers, strict=True
    ):
        per_scale.append(harmonic_aggregation(association(embeddings, reference), cover))
    return torch.stack(per_scale).mean(dim=0)
