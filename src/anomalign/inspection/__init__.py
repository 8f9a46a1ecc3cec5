"""Inspecting your own parts: fit a detector bundle, set its threshold, predict on a stream.

* :func:`fit_detector` fits a method on a few normal images (none for zero-shot methods),
  calibrates its maps on normal images and sets a threshold; :func:`load_detector` reads
  the bundle back. Both give an :class:`Inspector`, whose ``predict`` accepts paths,
  folders, PIL images and numpy arrays.
* :func:`predict_folder` writes scores, decisions, maps and overlays for many images,
  batched and resumable.
"""

from anomalign.inspection.calibration import Calibration, calibrate
from anomalign.inspection.detector_io import (
    DETECTOR_CLASSES,
    InspectionResult,
    Inspector,
    fit_detector,
    load_detector,
    register_detector_class,
)
from anomalign.inspection.inputs import IMAGE_SUFFIXES, expand_inputs
from anomalign.inspection.predict_run import PredictRun, predict_folder, read_rows
from anomalign.inspection.thresholds import (
    Threshold,
    manual_threshold,
    threshold_at_fpr,
    threshold_f1,
)

__all__ = [
    "DETECTOR_CLASSES",
    "IMAGE_SUFFIXES",
    "Calibration",
    "InspectionResult",
    "Inspector",
    "PredictRun",
    "Threshold",
    "calibrate",
    "expand_inputs",
    "fit_detector",
    "load_detector",
    "manual_threshold",
    "predict_folder",
    "read_rows",
    "register_detector_class",
    "threshold_at_fpr",
    "threshold_f1",
]
