"""Evaluation metrics for anomaly detection (datasets-and-metrics spec §2).

Image level: AUROC, AP (step, scikit-learn), AUPR (trapezoid, VisA code), F1-max.
Pixel level: AUROC, AP, F1-max and AUPRO@0.3 in three named variants (``"mvtec"`` exact,
``"compat"`` as the papers' code, ``"anomalib"``). Metrics are computed per category and
averaged over categories by :func:`summarize`. Undefined metrics are ``None`` with a reason.
"""

from anomalign.metrics.aggregate import CategoryMetrics, MetricsReport, summarize
from anomalign.metrics.aupro import AUPRO_VARIANTS, AuproVariant, label_regions
from anomalign.metrics.image import ImageMetrics, image_metrics
from anomalign.metrics.pixel import PixelMetricAccumulator, PixelMetrics, pixel_metrics
from anomalign.metrics.validation import MetricError

__all__ = [
    "AUPRO_VARIANTS",
    "AuproVariant",
    "CategoryMetrics",
    "ImageMetrics",
    "MetricError",
    "MetricsReport",
    "PixelMetricAccumulator",
    "PixelMetrics",
    "image_metrics",
    "label_regions",
    "pixel_metrics",
    "summarize",
]
