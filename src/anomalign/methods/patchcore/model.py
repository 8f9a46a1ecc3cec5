"""PatchCore's math on backbone tokens: locally aware patch features, the coreset memory
and the reweighted nearest-neighbour scores (Roth et al. 2022, §3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from anomalign.backbones.base import ImageTokens
from anomalign.components.memory import greedy_coreset, l2_nearest


def patch_features(
    tokens: ImageTokens, blocks: tuple[int, ...], neighbourhood: int, embed_dim: int | None
) -> tuple[torch.Tensor, tuple[int, int]]:
    """``(B, N, C)`` locally aware features on the finest grid of ``blocks`` and that grid.

    Each block's map gets a ``p x p`` average pool (stride 1, zero padding counted, as
    the reference code); coarser maps are upsampled bilinearly to the finest grid; the
    channels are concatenated and optionally average-pooled to ``embed_dim``.
    """
    grids = [tokens.intermediate_grids[b] for b in blocks]
    target = max(grids, key=lambda g: g[0] * g[1])
    maps = []
    for block, (h, w) in zip(blocks, grids, strict=True):
        x = tokens.intermediates[block].float()
        x = x.transpose(1, 2).reshape(x.shape[0], x.shape[2], h, w)
        if neighbourhood > 1:
            x = F.avg_pool2d(x, neighbourhood, stride=1, padding=neighbourhood // 2)
        if (h, w) != target:
            x = F.interpolate(x, size=target, mode="bilinear", align_corners=False)
        maps.append(x)
    features = torch.cat(maps, dim=1).flatten(2).transpose(1, 2)  # (B, N, C)
    if embed_dim is not None and embed_dim != features.shape[-1]:
        batch, count, width = features.shape
        pooled = F.adaptive_avg_pool1d(features.reshape(-1, 1, width), embed_dim)
        features = pooled.reshape(batch, count, embed_dim)
    return features.contiguous(), target


def build_memory(
    features: torch.Tensor,
    ratio: float,
    projection_dim: int,
    seed: int,
    max_rows: int | None = None,
) -> torch.Tensor:
    """``(M, C)`` normal features -> the coreset memory bank of ``ratio * M`` rows (at most
    ``max_rows``); all rows when that is every row."""
    count = max(1, int(features.shape[0] * ratio))
    if max_rows is not None:
        count = min(count, max_rows)
    if count >= features.shape[0]:
        return features.clone()
    index = greedy_coreset(features, count, projection_dim=projection_dim, seed=seed)
    return features[index.to(features.device)].clone()


def score_patches(
    features: torch.Tensor, memory: torch.Tensor, num_neighbors: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Patch scores ``(B, N)`` (distance to the nearest memory row) and image scores
    ``(B,)`` with the paper's reweighting (eq. 7):

    ``s = (1 - exp||m_test* - m*|| / sum_{m in N_b(m*)} exp||m_test* - m||) * s*``,

    where ``m_test*`` is the patch with the largest score ``s*``, ``m*`` its nearest memory
    row and ``N_b(m*)`` the ``b`` nearest memory rows of ``m*`` (``m*`` itself first).
    """
    batch, count, width = features.shape
    distances, index = l2_nearest(features.reshape(-1, width), memory, k=1)
    patch = distances[:, 0].view(batch, count)
    nearest = index[:, 0].view(batch, count)
    best, where = patch.max(dim=1)
    if num_neighbors <= 1 or memory.shape[0] < 2:
        return patch, best
    test_star = features[torch.arange(batch), where]  # (B, C)
    m_star = memory[nearest[torch.arange(batch), where]]  # (B, C)
    _, support = l2_nearest(m_star, memory, k=num_neighbors)  # (B, b)
    support_d = torch.linalg.vector_norm(test_star[:, None] - memory[support], dim=-1)
    weight = 1.0 - torch.softmax(support_d, dim=1)[:, 0]
    return patch, weight * best
