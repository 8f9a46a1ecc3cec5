"""The inspection tests' one-liner for `anomalign fit`: create, fit, calibrate, threshold."""

from __future__ import annotations

from typing import Any

from anomalign.inspection import check_threshold_inputs, fit_for_inspection
from anomalign.methods import Detector, create_detector, gather_images


def fit_detector(
    method: str,
    normal: Any = (),
    category: str | None = None,
    backbone: Any = None,
    *,
    method_options: dict[str, Any] | None = None,
    fit_options: dict[str, Any] | None = None,
    out: Any = None,
    **kwargs: Any,
) -> Detector:
    """``create_detector`` + ``fit_for_inspection`` (+ ``save`` when ``out`` is given)."""
    threshold_rule = {k: kwargs[k] for k in ("threshold", "fpr", "f1") if k in kwargs}
    check_threshold_inputs(
        method,
        normal=gather_images(normal) if normal else [],
        val_normal=gather_images(kwargs["val_normal"]) if kwargs.get("val_normal") else [],
        val_anomalous=kwargs.get("val_anomalous") or [],
        **threshold_rule,
    )
    detector = create_detector(method, backbone=backbone, **(method_options or {}))
    fit_for_inspection(detector, normal, category=category, fit_inputs=fit_options, **kwargs)
    if out is not None:
        detector.save(out)
    return detector
