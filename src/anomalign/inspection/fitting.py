"""What ``anomalign fit`` does to a detector: fit, calibrate the heatmaps, set a threshold.

:func:`fit_for_inspection` takes a detector built by :func:`anomalign.create_detector`,
fits it on the normal reference images, sets its fixed map
:class:`~anomalign.calibration.Calibration` from normal images and its decision
:class:`~anomalign.thresholds.Threshold` by one rule (manual, a false-positive rate on
normal validation images, or F1 on labelled ones), and records all of it in the
detector's ``fit_record``; ``save`` then writes one bundle.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from anomalign.calibration import calibrate
from anomalign.data.images import ImageInput
from anomalign.errors import ConfigError
from anomalign.methods import Detector, gather_images, method_spec
from anomalign.methods.base import describe_input
from anomalign.thresholds import threshold_at_fpr, threshold_f1


def check_threshold_inputs(
    method: str,
    *,
    normal: Sequence[ImageInput] = (),
    val_normal: Sequence[ImageInput] = (),
    val_anomalous: Sequence[ImageInput] = (),
    threshold: float | None = None,
    fpr: float | None = None,
    f1: bool = False,
) -> None:
    """Raise a :class:`ConfigError` before any fitting when the threshold rule cannot work
    (two rules, a value out of range, or missing validation images)."""
    if sum([threshold is not None, fpr is not None, bool(f1)]) > 1:
        raise ConfigError("Choose at most one of a manual threshold, fpr and f1.")
    if threshold is not None and not math.isfinite(threshold):
        raise ConfigError(f"The threshold must be a finite number, got {threshold}.")
    if fpr is not None and not 0.0 <= fpr < 1.0:  # also refuses nan
        raise ConfigError(f"The false-positive rate must be in [0, 1), got {fpr}.")
    learns = method_spec(method).uses_shots
    if fpr is not None and not val_normal and (learns or not normal):
        raise ConfigError(
            f"A false-positive-rate threshold for {method} needs normal validation images"
            + (
                " (the reference images are in its memory and score as perfectly normal)."
                if learns
                else "."
            )
        )
    if f1 and (not val_normal or not val_anomalous):
        raise ConfigError("An F1-optimal threshold needs normal and anomalous validation images.")


def fit_for_inspection(
    detector: Detector,
    normal: ImageInput | Sequence[ImageInput] = (),
    *,
    category: str | None = None,
    fit_inputs: Mapping[str, Any] | None = None,
    val_normal: ImageInput | Sequence[ImageInput] = (),
    val_anomalous: ImageInput | Sequence[ImageInput] = (),
    threshold: float | None = None,
    fpr: float | None = None,
    f1: bool = False,
    batch_size: int = 8,
    log: Callable[[str], None] | None = None,
) -> Detector:
    """Fit ``detector``, calibrate its maps and set its threshold; returns it.

    Args:
        normal: the normal reference images. Zero-shot methods learn nothing from them;
            they are used only for calibration and an FPR threshold.
        category: the part's name (prompts; FineGrainedAD's caption when none is given).
        fit_inputs: extra keyword arguments of the method's ``fit`` (e.g. ``captions``).
        val_normal, val_anomalous: validation images; calibration uses ``val_normal``
            (else ``normal``).
        threshold, fpr, f1: at most one rule (see :func:`check_threshold_inputs`).
        log: called with notes worth showing to the user (e.g. biased calibration).
    """
    say = log or (lambda message: None)
    started = time.perf_counter()
    normal_items = gather_images(normal) if normal else []
    val_normal_items = gather_images(val_normal) if val_normal else []
    val_anomalous_items = gather_images(val_anomalous) if val_anomalous else []
    check_threshold_inputs(
        detector.name,
        normal=normal_items,
        val_normal=val_normal_items,
        val_anomalous=val_anomalous_items,
        threshold=threshold,
        fpr=fpr,
        f1=f1,
    )
    learns = method_spec(detector.name).uses_shots
    detector.fit(normal_items if learns else [], category=category, **dict(fit_inputs or {}))
    fit_seconds = time.perf_counter() - started
    notes: list[str] = []

    calibration_items, source = val_normal_items, "normal validation images"
    if not calibration_items and normal_items:
        calibration_items, source = normal_items, "normal reference images"
        if learns:
            notes.append(
                "Maps were calibrated on the reference images the method was fitted on; "
                "their maps are lower than those of new normal images. Pass normal "
                "validation images for an unbiased range."
            )
    normal_scores = None
    if calibration_items:
        scores, maps = detector._scores_and_maps(calibration_items, batch_size)
        detector.calibration = calibrate(
            maps, scores, source=f"{source} ({len(calibration_items)})"
        )
        normal_scores = scores
    else:
        notes.append(
            "No normal images: heatmaps use the method's nominal range [0, 1]. Pass normal "
            "images to calibrate them."
        )
    if threshold is not None:
        detector.set_threshold(threshold)
    elif fpr is not None:
        assert normal_scores is not None
        detector.threshold = threshold_at_fpr(
            normal_scores, fpr, source=f"{source} ({len(calibration_items)})"
        )
    elif f1:
        assert normal_scores is not None
        anomalous_scores, _ = detector._scores_and_maps(val_anomalous_items, batch_size)
        labels = np.r_[np.zeros(len(normal_scores)), np.ones(len(anomalous_scores))]
        detector.threshold = threshold_f1(
            labels,
            np.r_[normal_scores, anomalous_scores],
            source=(
                f"labelled validation images ({len(val_normal_items)} normal, "
                f"{len(val_anomalous_items)} anomalous)"
            ),
        )
    if detector.threshold is not None and "note" in detector.threshold.stats:
        notes.append(detector.threshold.stats["note"])
    for note in notes:
        say(note)
    detector.fit_record = {
        **detector.fit_record,
        "normal_images": [describe_input(i) for i in normal_items],
        "val_normal_images": len(val_normal_items),
        "val_anomalous_images": len(val_anomalous_items),
        "fit_seconds": round(fit_seconds, 3),
        "total_seconds": round(time.perf_counter() - started, 3),
        "notes": notes,
    }
    if normal_scores is not None and (val_normal_items or not learns):
        # unbiased normal scores (not those of images in the method's memory): the FPR of
        # any other threshold can be read from them (the service's page does)
        detector.fit_record["normal_scores"] = [float(v) for v in np.asarray(normal_scores)]
        detector.fit_record["normal_scores_source"] = f"{source} ({len(calibration_items)})"
    return detector
