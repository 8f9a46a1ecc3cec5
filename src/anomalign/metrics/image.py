"""Image-level metrics: AUROC, AP (step), AUPR (trapezoid) and F1-max with its threshold."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from anomalign.metrics import curves
from anomalign.metrics.validation import MetricError, check_binary, check_scores, to_numpy


@dataclass(frozen=True)
class ImageMetrics:
    """Image-level results for one category.

    A metric that is undefined for the data (e.g. AUROC with only one class) is ``None`` and
    ``undefined`` maps its name to the reason; no metric is ever a silent nan.
    """

    auroc: float | None
    ap: float | None
    aupr: float | None
    f1_max: float | None
    f1_threshold: float | None
    n_pos: int
    n_neg: int
    undefined: dict[str, str] = field(default_factory=dict)
    ap_variant: str = "step (scikit-learn average_precision_score)"
    aupr_variant: str = "trapezoid (auc(recall, precision), VisA reference code)"

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form for JSON reports."""
        return asdict(self)


def image_metrics(labels: Any, scores: Any) -> ImageMetrics:
    """Compute image-level metrics from per-image labels (0 normal, 1 anomalous) and scores."""
    y = check_binary(labels, "image labels")
    s = check_scores(to_numpy(scores), "image scores")
    if s.ndim != 1 or s.shape != y.shape:
        raise MetricError(
            f"image labels have shape {y.shape} but image scores have shape {s.shape}"
        )
    return _from_groups(curves.group_scores(curves.sort_negatives(s[~y].copy()), s[y]))


def _from_groups(g: curves.ScoreGroups) -> ImageMetrics:
    undefined: dict[str, str] = {}
    auroc = ap = aupr = f1 = thr = None
    if g.n_pos == 0:
        reason = f"no anomalous samples (only {g.n_neg} normal)"
        for name in ("auroc", "ap", "aupr", "f1_max"):
            undefined[name] = reason
    else:
        ap = curves.average_precision(g)
        aupr = curves.aupr_trapezoid(g)
        f1, thr = curves.f1_max(g)
        if g.n_neg == 0:
            undefined["auroc"] = f"no normal samples (only {g.n_pos} anomalous)"
        else:
            auroc = curves.auroc(g)
    return ImageMetrics(
        auroc=auroc,
        ap=ap,
        aupr=aupr,
        f1_max=f1,
        f1_threshold=thr,
        n_pos=g.n_pos,
        n_neg=g.n_neg,
        undefined=undefined,
    )
