"""Deployment: export a fitted detector to ONNX and predict with onnxruntime, without torch.

* :func:`export_detector` (torch; :mod:`.exporter`, :mod:`.graphs`): bundle -> ``.onnx``
  with the fitted state as constants and threshold, calibration, preprocessing and
  provenance in the metadata (:mod:`.metadata`).
* :class:`OnnxDetector` (:mod:`.runtime`, torch-free): the exported model behind the
  :class:`~anomalign.Detector` interface.

Names are imported lazily, so ``from anomalign.export import OnnxDetector`` never loads torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "export_detector": "anomalign.export.exporter",
    "ExportError": "anomalign.export.exporter",
    "ExportResult": "anomalign.export.exporter",
    "OnnxDetector": "anomalign.export.runtime",
    "ExportMetadata": "anomalign.export.metadata",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'anomalign.export' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
