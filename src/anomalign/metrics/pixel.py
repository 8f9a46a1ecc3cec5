"""Pixel-level metrics: AUROC, AP, F1-max and AUPRO, accumulated image batch by image batch.

The accumulator never keeps the caller's maps: per batch it stores the normal pixels' scores
(float32), the anomalous pixels' scores with their region ids (int32) and the region sizes.
``compute`` then sorts the normal scores once (threads on the CPU, ``torch.sort`` on the maps'
device when maps were tensors) and derives all four metrics from that one sort.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from anomalign.metrics import aupro as _aupro
from anomalign.metrics import curves
from anomalign.metrics.validation import (
    MetricError,
    check_binary,
    check_same_shape,
    check_scores,
    is_tensor,
)


@dataclass(frozen=True)
class PixelMetrics:
    """Pixel-level results for one category (all pixels of all its test images, normal included).

    A metric that is undefined for the data is ``None`` and ``undefined`` says why.
    """

    auroc: float | None
    ap: float | None
    f1_max: float | None
    f1_threshold: float | None
    aupro: float | None
    aupro_variant: str
    fpr_limit: float
    n_pos: int
    n_neg: int
    n_regions: int
    n_images: int
    undefined: dict[str, str] = field(default_factory=dict)
    ap_variant: str = "step (scikit-learn average_precision_score)"

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form for JSON reports."""
        return asdict(self)


class PixelMetricAccumulator:
    """Collect anomaly maps and masks of one category, then compute all pixel metrics at once.

    Args:
        aupro_variant: ``"mvtec"`` (exact, official; default), ``"compat"`` (200 thresholds,
            min-max FPR rescaling, as the papers' code) or ``"anomalib"`` (anomalib v2.0's
            per-region averaging; slow, for comparison).
        fpr_limit: FPR up to which AUPRO is integrated (0.3 in every reference).
        dtype: score precision kept (float32 by default; float64 for bit-faithful rankings
            of float64 maps).
    """

    def __init__(
        self,
        aupro_variant: _aupro.AuproVariant = "mvtec",
        fpr_limit: float = 0.3,
        dtype: Any = np.float32,
    ) -> None:
        if aupro_variant not in _aupro.AUPRO_VARIANTS:
            raise MetricError(
                f"unknown AUPRO variant {aupro_variant!r}; expected one of {_aupro.AUPRO_VARIANTS}"
            )
        if not 0.0 < fpr_limit <= 1.0:
            raise MetricError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
        self.aupro_variant = aupro_variant
        self.fpr_limit = float(fpr_limit)
        self.dtype = np.dtype(dtype).type
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self._neg: list[Any] = []
        self._pos: list[np.ndarray] = []
        self._regions: list[np.ndarray] = []
        self._sizes: list[np.ndarray] = []
        self._n_regions = 0
        self._n_images = 0
        self._shape: tuple[int, ...] | None = None
        self._min: Any = None
        self._max: Any = None

    def update(self, maps: Any, masks: Any) -> None:
        """Add anomaly maps and their ground-truth masks, (H, W) or (B, H, W) each.

        Maps are numpy arrays or torch tensors (kept on their device); masks are boolean or
        0/1. Raises :class:`MetricError` for mismatched shapes, non-binary masks or nan/inf.
        """
        if not is_tensor(maps):
            maps = np.asarray(maps)
        check_same_shape(
            tuple(maps.shape), tuple(masks.shape if is_tensor(masks) else np.shape(masks))
        )
        if len(maps.shape) not in (2, 3):
            raise MetricError(f"anomaly maps must be (H, W) or (B, H, W), got {tuple(maps.shape)}")
        scores = check_scores(maps, "anomaly maps", self.dtype)
        gt = check_binary(masks, "masks")
        if gt.ndim == 2:
            gt, scores = gt[None], scores[None]
        labels, n = _aupro.label_regions(gt)
        region_ids = labels[gt] - 1  # C order, same as scores[gt] below
        sizes = np.bincount(region_ids, minlength=n)
        if is_tensor(scores):
            import torch

            gt_t = torch.from_numpy(gt).to(scores.device)
            pos = scores[gt_t].cpu().numpy()
            neg = scores[~gt_t]
            lo, hi = scores.min().item(), scores.max().item()
        else:
            pos = scores[gt]
            neg = scores[~gt]
            lo, hi = scores.min(), scores.max()
        self._neg.append(neg)
        self._pos.append(pos)
        self._regions.append((region_ids + self._n_regions).astype(np.int32))
        self._sizes.append(sizes)
        self._n_regions += n
        self._n_images += gt.shape[0]
        self._min = lo if self._min is None else min(self._min, lo)
        self._max = hi if self._max is None else max(self._max, hi)

    def compute(self) -> PixelMetrics:
        """Compute AUROC, AP, F1-max and AUPRO over everything added so far."""
        if self._n_images == 0:
            raise MetricError("no anomaly maps were added; call update() first")
        if is_tensor(self._neg[0]):
            import torch

            neg_all = torch.cat([t.reshape(-1) for t in self._neg])
        else:
            neg_all = np.concatenate(self._neg)
        pos = np.concatenate(self._pos)
        regions = np.concatenate(self._regions)
        sizes = np.concatenate(self._sizes)
        neg_for_anomalib = None
        if self.aupro_variant == "anomalib" and pos.size and len(neg_all):
            neg_for_anomalib = np.asarray(
                neg_all.cpu().numpy() if is_tensor(neg_all) else neg_all.copy()
            )
        negatives = curves.sort_negatives(neg_all)
        groups = curves.group_scores(negatives, pos)

        undefined: dict[str, str] = {}
        auroc = ap = f1 = thr = aupro = None
        if groups.n_pos == 0:
            reason = f"no anomalous pixels among {groups.n_neg} pixels"
            for name in ("auroc", "ap", "f1_max", "aupro"):
                undefined[name] = reason
        else:
            ap = curves.average_precision(groups)
            f1, thr = curves.f1_max(groups)
            if groups.n_neg == 0:
                reason = f"no normal pixels among {groups.n_pos} pixels"
                undefined["auroc"] = undefined["aupro"] = reason
            else:
                auroc = curves.auroc(groups)
                aupro, why = self._aupro(groups, negatives, pos, regions, sizes, neg_for_anomalib)
                if why is not None:
                    undefined["aupro"] = why
        return PixelMetrics(
            auroc=auroc,
            ap=ap,
            f1_max=f1,
            f1_threshold=thr,
            aupro=aupro,
            aupro_variant=self.aupro_variant,
            fpr_limit=self.fpr_limit,
            n_pos=groups.n_pos,
            n_neg=groups.n_neg,
            n_regions=self._n_regions,
            n_images=self._n_images,
            undefined=undefined,
        )

    def _aupro(
        self,
        groups: curves.ScoreGroups,
        negatives: curves.SortedNegatives,
        pos: np.ndarray,
        regions: np.ndarray,
        sizes: np.ndarray,
        neg_raw: np.ndarray | None,
    ) -> tuple[float | None, str | None]:
        if self.aupro_variant == "mvtec":
            return _aupro.aupro_mvtec(groups, regions, sizes, self.fpr_limit), None
        if self.aupro_variant == "compat":
            return _aupro.aupro_compat(
                negatives,
                pos,
                regions,
                sizes,
                self.dtype(self._min),
                self.dtype(self._max),
                self.fpr_limit,
            )
        assert neg_raw is not None
        return _aupro.aupro_anomalib(neg_raw, pos, regions, len(sizes), self.fpr_limit), None


def pixel_metrics(
    maps: Any,
    masks: Any,
    aupro_variant: _aupro.AuproVariant = "mvtec",
    fpr_limit: float = 0.3,
) -> PixelMetrics:
    """Pixel metrics of one category from all its maps and masks, (B, H, W) or (H, W)."""
    acc = PixelMetricAccumulator(aupro_variant=aupro_variant, fpr_limit=fpr_limit)
    acc.update(maps, masks)
    return acc.compute()
