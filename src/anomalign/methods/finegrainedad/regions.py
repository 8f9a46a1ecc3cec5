"""Language-guided progressive region aggregation and region weights (finegrainedad.md §3.1-3.2).

Tokens are clustered on their cosine similarities to the normal prompt features of
the components and the background (not on raw visual features), with DPC-kNN in two
stages: foreground/background, then E+1 regions inside the foreground. Each prompt is
matched to the region whose mean visual feature is closest, and its region weight is
``1 + boost`` there and 1 elsewhere, average-pooled to the patch grid.

The density tie-break noise of DPC-kNN comes from a seeded generator (or is given),
so the aggregation is deterministic. :func:`aggregate_regions_official` reproduces the
official multi-shot assignment (``clusters.py``, ``model.py``
``language_guided_progressive_region_aggregation``) on a batch of shots.
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
    assign: str = "unmasked",
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Density-peak clustering with kNN density of ``(N, C)`` points -> ``(N,)`` labels.

    ``dist = cdist / sqrt(C)``; ``density = exp(-mean(kNN dist^2))`` (+1e-6 noise);
    delta = distance to the nearest denser point; centres = top ``n_clusters`` of
    ``delta * density``; every point joins its nearest centre. Masked-out points
    (``token_mask`` False) do not count as neighbours and have zero density.
    ``assign="masked"`` assigns on the masked distances, as ``clusters.py`` does (a
    masked-out point is equally far from every centre and joins cluster 0);
    ``"unmasked"`` on the true distances. ``noise``: the ``(N,)`` uniform tie-break draw
    (default: from ``generator``).
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
    if noise is None:
        noise = torch.rand(n, generator=generator)
    density = density + noise.to(density.device, density.dtype) * 1e-6
    if token_mask is not None:
        density = density * token_mask.to(density.dtype)
    denser = density[None, :] > density[:, None]
    dist_max = dist_for_density.max()
    delta = torch.where(denser, dist_for_density, dist_max).min(dim=-1).values
    centres = (delta * density).topk(n_clusters).indices
    labels = (dist_for_density if assign == "masked" else dist)[centres].argmin(dim=0)
    labels[centres] = torch.arange(n_clusters, device=labels.device)
    return labels


def stage_two_k(n_clusters: int) -> int:
    """The code's kNN size for the second stage: 5, or min(3, n//2) when 5 > n."""
    return 5 if n_clusters >= 5 else max(1, min(3, n_clusters // 2))


def aggregate_regions(
    tokens: torch.Tensor,
    normal_features: torch.Tensor,
    generator: torch.Generator | None = None,
    background: str = "nearest",
) -> torch.Tensor:
    """Two-stage aggregation of one image's tokens -> ``(N,)`` region labels in 0..E.

    Args:
        tokens: ``(N, D)`` normalised projected patch tokens (the tiled, fine grid).
        normal_features: ``(E+1, D)`` normal prompt features, components then background.
        generator: seeded source of the density tie-break noise.
        background: stage-2 label of background tokens, token 0's label after a stage-2
            assignment on the "masked" distances (the code: cluster 0, or token 0's
            cluster when token 0 is foreground) or on the true distances ("nearest").
    """
    assign = "masked" if background == "masked" else "unmasked"
    x = tokens.float() @ normal_features.float().T  # language features, (N, E+1)
    n_regions = normal_features.shape[0]
    # Stage 1: foreground / background (the code's CTM k=8 exceeds 2 clusters: k=1).
    stage1 = dpc_knn(x, 2, 1, generator=generator)
    prompt = normal_features[-1].float()  # the background prompt
    scores = []
    for label in range(2):
        members = tokens[stage1 == label]
        scores.append(float(members.float().mean(0) @ prompt) if len(members) else -math.inf)
    bg_label = int(torch.tensor(scores).argmax())
    foreground = stage1 != bg_label
    if not bool(foreground.any()):
        foreground = torch.ones_like(foreground)
    # Stage 2: E+1 regions, background tokens masked out of the density.
    labels = dpc_knn(x, n_regions, stage_two_k(n_regions), foreground, generator, assign)
    labels = torch.where(foreground, labels, labels[0])
    return labels


def dpc_knn_batched(
    x: torch.Tensor,
    n_clusters: int,
    k: int,
    token_mask: torch.Tensor | None,
    noise: torch.Tensor,
) -> torch.Tensor:
    """``clusters.py``'s batched DPC-kNN: ``(B, N, C)`` points -> ``(B, N)`` labels.

    As :func:`dpc_knn` with ``assign="masked"``, except that masked distances are set to
    the batch-wide maximum plus one and ``noise`` is the ``(B, N)`` draw of the batch.
    """
    _, n, channels = x.shape
    dist = torch.cdist(x.float(), x.float()) / math.sqrt(channels)
    if token_mask is not None:
        keep = token_mask > 0
        dist = dist * keep[:, None, :] + (dist.max() + 1) * (~keep[:, None, :])
    k = max(1, min(int(k), n))
    nearest = dist.topk(k, dim=-1, largest=False).values
    density = (-(nearest**2).mean(dim=-1)).exp()
    density = density + noise.to(density.device, density.dtype) * 1e-6
    if token_mask is not None:
        density = density * keep
    denser = (density[:, None, :] > density[:, :, None]).to(dist.dtype)
    dist_max = dist.flatten(1).max(dim=-1).values[:, None, None]
    delta = (dist * denser + dist_max * (1 - denser)).min(dim=-1).values
    centres = (delta * density).topk(n_clusters, dim=-1).indices  # (B, n_clusters)
    rows = torch.gather(dist, 1, centres[..., None].expand(-1, -1, n))
    labels = rows.argmin(dim=1)
    order = torch.arange(n_clusters, device=labels.device).expand_as(centres)
    labels.scatter_(1, centres, order)
    return labels


def aggregate_regions_official(
    tokens: torch.Tensor,
    normal_features: torch.Tensor,
    noise: tuple[torch.Tensor, torch.Tensor],
) -> torch.Tensor:
    """The official multi-shot aggregation of ``(k, N, D)`` shots -> ``(k, N)`` labels.

    Both stages run on the batch of shots (finegrainedad.md §3.1 step 4). Stage 1 splits
    every shot in two; which half is background is decided, for every shot, on the
    token positions of *image 0*'s halves, and a shot whose halves are swapped takes
    image 0's swapped labels as its mask (others keep their own, unrelabelled, stage-1
    labels). Stage 2 masks those backgrounds out of the density and assigns on the
    masked distances; the tokens at image 0's background positions then take the label
    of the shot's token 0, foreground tokens keep their own.

    Args:
        tokens: ``(k, N, D)`` normalised projected tokens of the fine grid of every shot.
        normal_features: ``(E+1, D)`` normal prompt features, components then background,
            unnormalised as the code passes them (the text tower's output).
        noise: the ``(k, N)`` uniform tie-break draws of stage 1 and stage 2.
    """
    tokens = tokens.float()
    normal_features = normal_features.float()
    # cosine similarity written as the code does (stage 1 with k=1 is sensitive to the
    # last bit of these values)
    norms = tokens.norm(dim=-1, keepdim=True) * normal_features.norm(dim=-1)[None, None]
    x = (tokens @ normal_features.T) / norms
    shots, n = tokens.shape[:2]
    stage1 = dpc_knn_batched(x, 2, 1, None, noise[0])
    zero, one = stage1[0] == 0, stage1[0] == 1
    background = normal_features[-1]
    mask = stage1.clone()
    for shot in range(shots):
        score0 = tokens[shot, zero].mean(0) @ background
        score1 = tokens[shot, one].mean(0) @ background
        if score0 < score1:
            mask[shot, zero] = 1
            mask[shot, one] = 0
    source = torch.arange(n, device=tokens.device)
    source = torch.where(mask[0] == 0, torch.zeros_like(source), source)
    n_regions = normal_features.shape[0]
    stage2 = dpc_knn_batched(x, n_regions, stage_two_k(n_regions), mask, noise[1])
    return stage2[:, source]


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
    pooling: str = "avg",
) -> torch.Tensor:
    """``(E+1, N_patch)`` weights: 1, plus ``boost`` on the matched region, pooled ``pool``x.

    ``pooling="avg"`` averages each ``pool x pool`` block; ``"unfold_view"`` is the code's
    ``F.unfold(w, pool, stride=pool).view(..., -1, pool*pool).mean(-1)``: the unfolded
    ``(pool*pool, blocks)`` matrix is read back in row-major order as ``(blocks,
    pool*pool)``, so output ``i`` averages one kernel offset over ``pool*pool`` consecutive
    blocks instead of block ``i`` (positions are scrambled).
    """
    grid = labels.view(1, 1, *fine_grid)
    masks = (grid == matched.view(-1, 1, 1, 1)).float()  # (E+1, 1, H, W)
    weights = 1.0 + boost * masks
    if pool > 1 and pooling == "unfold_view":
        unfolded = F.unfold(weights, kernel_size=pool, stride=pool)  # (E+1, pool^2, blocks)
        return unfolded.reshape(weights.shape[0], -1, pool * pool).mean(dim=-1)
    if pool > 1:
        weights = F.avg_pool2d(weights, pool)
    return weights.flatten(1)


def match_regions_of(
    tokens: torch.Tensor, labels: torch.Tensor, n_regions: int, normal_features: torch.Tensor
) -> torch.Tensor:
    """:func:`match_regions` with a fixed region count (the code averages every cluster
    id ``0..E`` of image 0, whatever labels occur)."""
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
