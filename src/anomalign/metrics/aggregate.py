"""Per-category results and their mean over categories, as the papers report them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from anomalign.metrics.image import ImageMetrics
from anomalign.metrics.pixel import PixelMetrics
from anomalign.metrics.validation import MetricError

IMAGE_FIELDS = ("auroc", "ap", "aupr", "f1_max")
PIXEL_FIELDS = ("auroc", "ap", "f1_max", "aupro")


@dataclass(frozen=True)
class CategoryMetrics:
    """Image- and/or pixel-level results of one category."""

    image: ImageMetrics | None = None
    pixel: PixelMetrics | None = None

    def flat(self) -> dict[str, float | None]:
        """Metrics keyed ``image_auroc``, ``pixel_aupro`` ...; ``None`` where undefined."""
        out: dict[str, float | None] = {}
        if self.image is not None:
            for name in IMAGE_FIELDS:
                out[f"image_{name}"] = getattr(self.image, name)
        if self.pixel is not None:
            for name in PIXEL_FIELDS:
                out[f"pixel_{name}"] = getattr(self.pixel, name)
        return out

    def reasons(self) -> dict[str, str]:
        """Why each undefined metric is undefined, keyed like :meth:`flat`."""
        out: dict[str, str] = {}
        for prefix, res in (("image", self.image), ("pixel", self.pixel)):
            if res is not None:
                out.update({f"{prefix}_{k}": v for k, v in res.undefined.items()})
        return out


@dataclass(frozen=True)
class MetricsReport:
    """Per-category metrics plus their unweighted mean over categories.

    ``mean[m]`` averages the categories where ``m`` is defined; ``excluded[m]`` lists the
    others with the reason, so a mean never hides a missing category. ``variants`` names the
    metric definitions used.
    """

    categories: dict[str, CategoryMetrics]
    mean: dict[str, float | None]
    n_averaged: dict[str, int]
    excluded: dict[str, dict[str, str]] = field(default_factory=dict)
    variants: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form for JSON reports."""
        return {
            "categories": {
                name: {
                    "image": None if c.image is None else c.image.to_dict(),
                    "pixel": None if c.pixel is None else c.pixel.to_dict(),
                }
                for name, c in self.categories.items()
            },
            "mean": dict(self.mean),
            "n_averaged": dict(self.n_averaged),
            "excluded": {k: dict(v) for k, v in self.excluded.items()},
            "variants": dict(self.variants),
        }


def summarize(per_category: Mapping[str, CategoryMetrics]) -> MetricsReport:
    """Average each metric over the categories where it is defined.

    Raises :class:`MetricError` when categories used different AUPRO variants or FPR limits,
    since such a mean would mix definitions.
    """
    if not per_category:
        raise MetricError("no categories to summarize")
    pixel_defs = {
        (c.pixel.aupro_variant, c.pixel.fpr_limit)
        for c in per_category.values()
        if c.pixel is not None
    }
    if len(pixel_defs) > 1:
        raise MetricError(f"categories mix AUPRO definitions {sorted(pixel_defs)}")
    values: dict[str, list[float]] = {}
    excluded: dict[str, dict[str, str]] = {}
    for cat, res in per_category.items():
        reasons = res.reasons()
        for name, value in res.flat().items():
            values.setdefault(name, [])
            if value is None:
                why = reasons.get(name, "not computed")
                excluded.setdefault(name, {})[cat] = why
            else:
                values[name].append(value)
    mean = {k: (sum(v) / len(v) if v else None) for k, v in values.items()}
    variants: dict[str, str] = {}
    if any(c.image is not None for c in per_category.values()):
        variants["image_ap"] = "step (scikit-learn)"
        variants["image_aupr"] = "trapezoid (VisA reference)"
    if pixel_defs:
        variant, limit = next(iter(pixel_defs))
        variants["pixel_ap"] = "step (scikit-learn)"
        variants["pixel_aupro"] = f"{variant}@{limit:g}"
    return MetricsReport(
        categories=dict(per_category),
        mean=mean,
        n_averaged={k: len(v) for k, v in values.items()},
        excluded=excluded,
        variants=variants,
    )
