"""AUPRO (area under the per-region-overlap curve) up to a false-positive-rate limit.

Variants (every result names the one it used):

``"mvtec"``
    The official MVTec AD evaluation: 8-connected ground-truth regions per image, normal
    pixels weighted ``1/N_ok`` for FPR and region pixels ``1/(|r| * N_regions)`` for PRO, one
    global descending sort with ties merged, trapezoid up to the limit with the end point
    interpolated, divided by the limit. Exact.
``"compat"``
    The cflow-ad scheme of the AnoVL / APRIL-GAN / AnomalyCLIP / FineGrainedAD code: 200 evenly
    spaced thresholds from the minimum to the maximum score (``score > t``), points with
    ``FPR < limit`` kept, their FPR min-max rescaled to [0, 1], trapezoid area (no division).
``"anomalib"``
    anomalib v2.0's ``AUPRO``: one ROC per region on background plus that region, each
    resampled in index space to the global ROC's length, curves averaged, area divided by the
    last averaged FPR. A per-region loop, costing regions × pixels: for comparison only.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import ndimage

from anomalign.metrics.curves import ScoreGroups, SortedNegatives

AuproVariant = Literal["mvtec", "compat", "anomalib"]
AUPRO_VARIANTS: tuple[str, ...] = ("mvtec", "compat", "anomalib")

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def label_regions(masks: np.ndarray) -> tuple[np.ndarray, int]:
    """Label 8-connected regions of boolean masks, (H, W) or (B, H, W), never across images.

    Labels run 1..n over the whole batch (0 is background), as in the official MVTec code
    which labels each ground-truth image separately.
    """
    if masks.ndim == 2:
        return ndimage.label(masks, structure=_EIGHT_CONNECTED)
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = _EIGHT_CONNECTED  # connect within a slice only
    return ndimage.label(masks, structure=structure)


def integrate_to(x: np.ndarray, y: np.ndarray, limit: float) -> float:
    """Trapezoid area under ``y(x)`` for ``x <= limit``, interpolating ``y`` at ``limit``.

    ``x`` must be non-decreasing (as the official ``generic_util.trapezoid`` assumes).
    """
    k = int(np.searchsorted(x, limit, side="right"))
    xs, ys = x[:k], y[:k]
    area = float(np.sum(0.5 * (ys[1:] + ys[:-1]) * np.diff(xs)))
    if 0 < k < len(x) and x[k - 1] < limit:
        x0, x1, y0, y1 = x[k - 1], x[k], y[k - 1], y[k]
        y_lim = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
        area += 0.5 * (y0 + y_lim) * (limit - x0)
    return float(area)


def pro_curve(
    groups: ScoreGroups, pos_regions: np.ndarray, region_sizes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Exact PRO curve (FPR, PRO) from (0, 0) to (1, 1) with tied scores merged.

    Only groups of tied scores that contain anomalous pixels change PRO; between them the curve
    is flat. So each such group contributes two points: one just before it enters (negatives
    scoring strictly higher) and one after (negatives scoring at least as high). Points of the
    full official curve that are dropped lie on the straight segments kept, so areas agree.
    """
    n_regions = len(region_sizes)
    weights = 1.0 / (region_sizes.astype(np.float64) * n_regions)
    inc = groups.group_sums(weights[pos_regions])
    pro = np.minimum(np.cumsum(inc), 1.0)
    pro_before = np.concatenate(([0.0], pro[:-1]))
    n = float(groups.n_neg)
    x = np.empty(2 * len(pro) + 2)
    y = np.empty_like(x)
    x[0], y[0], x[-1], y[-1] = 0.0, 0.0, 1.0, 1.0
    x[1:-1:2], y[1:-1:2] = groups.fp_gt / n, pro_before
    x[2:-1:2], y[2:-1:2] = groups.fp_ge / n, pro
    return x, y


def aupro_mvtec(
    groups: ScoreGroups, pos_regions: np.ndarray, region_sizes: np.ndarray, fpr_limit: float
) -> float:
    """Official MVTec AD AUPRO: area of the exact PRO curve up to ``fpr_limit``, / ``fpr_limit``."""
    fpr, pro = pro_curve(groups, pos_regions, region_sizes)
    return float(integrate_to(fpr, pro, fpr_limit) / fpr_limit)


def aupro_compat(
    negatives: SortedNegatives,
    pos_scores: np.ndarray,
    pos_regions: np.ndarray,
    region_sizes: np.ndarray,
    score_min: np.floating,
    score_max: np.floating,
    fpr_limit: float = 0.3,
    max_step: int = 200,
) -> tuple[float | None, str | None]:
    """cflow-ad style AUPRO as the papers' code computes it; returns (value, reason if None).

    Thresholds are ``np.arange(min, max, (max - min) / max_step)`` in the maps' dtype, exactly
    as the reference loop builds them; counts come from the shared sorted negatives and one
    region × threshold histogram instead of re-labelling every map at every threshold.
    """
    if not score_max > score_min:
        return None, "compat AUPRO needs max score > min score (maps are constant)"
    delta = (score_max - score_min) / max_step
    thresholds = np.arange(score_min, score_max, delta)
    _, fp = negatives.count_ge_gt(thresholds)
    fprs = fp / negatives.n
    k = len(thresholds)
    bins = np.searchsorted(thresholds, pos_scores.astype(thresholds.dtype), side="left")
    hist = np.bincount(
        pos_regions.astype(np.int64) * (k + 1) + bins, minlength=len(region_sizes) * (k + 1)
    ).reshape(len(region_sizes), k + 1)
    above = np.cumsum(hist[:, ::-1], axis=1)[:, ::-1]  # above[:, b]: pixels in bins >= b
    pros = (above[:, 1:] / region_sizes[:, None].astype(np.float64)).mean(axis=0)
    keep = fprs < fpr_limit
    x, y = fprs[keep], pros[keep]
    if len(x) < 2 or x.max() == x.min():
        return None, f"compat AUPRO needs two thresholds with distinct FPR < {fpr_limit}"
    x = (x - x.min()) / (x.max() - x.min())
    # sklearn.metrics.auc on a non-increasing x: minus the trapezoid.
    return float(-np.sum(0.5 * (y[1:] + y[:-1]) * np.diff(x))), None


def _roc_points(neg: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC points as torchmetrics' ``binary_roc`` (thresholds=None) returns them."""
    scores = np.concatenate((neg, pos))
    target = np.concatenate((np.zeros(len(neg), bool), np.ones(len(pos), bool)))
    order = np.argsort(scores, kind="stable")[::-1]
    s, t = scores[order], target[order]
    ends = np.flatnonzero(np.append(s[1:] != s[:-1], True))
    tps = np.concatenate(([0], np.cumsum(t)[ends]))
    fps = np.concatenate(([0], ends + 1 - tps[1:]))
    fpr = fps / fps[-1] if fps[-1] > 0 else np.zeros(len(fps))
    tpr = tps / tps[-1] if tps[-1] > 0 else np.zeros(len(tps))
    return fpr.astype(np.float32), tpr.astype(np.float32)


def _interp1d(old_x: np.ndarray, old_y: np.ndarray, new_x: np.ndarray) -> np.ndarray:
    eps = np.finfo(np.float32).eps
    slope = (old_y[1:] - old_y[:-1]) / (eps + (old_x[1:] - old_x[:-1]))
    idx = np.clip(np.searchsorted(old_x, new_x, side="left") - 1, 0, len(old_x) - 2)
    return old_y[idx] + slope[idx] * (new_x - old_x[idx])


def aupro_anomalib(
    neg_scores: np.ndarray,
    pos_scores: np.ndarray,
    pos_regions: np.ndarray,
    n_regions: int,
    fpr_limit: float = 0.3,
) -> float:
    """anomalib v2.0 ``AUPRO`` (``num_thresholds=None``), re-implemented in numpy float32."""
    limit = np.float32(fpr_limit)
    global_fpr, _ = _roc_points(neg_scores, pos_scores)
    size = int(np.count_nonzero(global_fpr <= limit))
    tpr_sum = np.zeros(size, np.float32)
    fpr_sum = np.zeros(size, np.float32)
    new_idx = np.arange(size, dtype=np.float32)
    order = np.argsort(pos_regions, kind="stable")
    bounds = np.searchsorted(pos_regions[order], np.arange(n_regions + 1))
    for r in range(n_regions):
        new_idx[-1] = size - 1
        fpr, tpr = _roc_points(neg_scores, pos_scores[order[bounds[r] : bounds[r + 1]]])
        region_limit = fpr[fpr > limit].min() if fpr[fpr <= limit].max() == 0 else limit
        idx = np.flatnonzero(fpr <= region_limit)
        interp = not np.isclose(fpr[idx].max(), limit, rtol=1e-5, atol=1e-8)
        if interp:
            nxt = int(np.searchsorted(fpr, limit, side="left"))
            slope = 1 - (fpr[nxt] - limit) / (fpr[nxt] - fpr[nxt - 1])
            idx = np.append(idx, nxt)
        fpr, tpr = fpr[idx], tpr[idx]
        pos_idx = idx.astype(np.float32)
        pos_idx /= pos_idx.max()
        pos_idx *= new_idx.max()
        if interp:
            new_idx[-1] = pos_idx[-2] + (pos_idx[-1] - pos_idx[-2]) * slope
        tpr_sum += _interp1d(pos_idx, tpr, new_idx)
        fpr_sum += _interp1d(pos_idx, fpr, new_idx)
    tpr_mean = tpr_sum / n_regions
    fpr_mean = fpr_sum / n_regions
    order_x = np.argsort(fpr_mean, kind="stable")  # auc(..., reorder=True)
    x, y = fpr_mean[order_x].astype(np.float64), tpr_mean[order_x].astype(np.float64)
    return float(np.sum(0.5 * (y[1:] + y[:-1]) * np.diff(x)) / x[-1])
