"""Inspecting your own parts: prepare a detector for a line, then predict on a stream.

* :func:`fit_for_inspection` fits a detector (from :func:`anomalign.create_detector`),
  calibrates its maps on normal images and sets its threshold: what ``anomalign fit``
  does before saving the bundle.
* :func:`predict_folder` writes scores, decisions, maps and overlays for many images,
  batched and resumable.
"""

from anomalign.inspection.fitting import check_threshold_inputs, fit_for_inspection
from anomalign.inspection.predict_run import (
    PredictRun,
    check_predict_options,
    predict_folder,
    read_rows,
)

__all__ = [
    "PredictRun",
    "check_predict_options",
    "check_threshold_inputs",
    "fit_for_inspection",
    "predict_folder",
    "read_rows",
]
