"""The service's only contact with the detector API: load a bundle, predict a batch, render.

Everything else in :mod:`anomalign.service` sees a :class:`ServedDetector` (what a
detector is: threshold, calibration, description) and a :class:`BatchPrediction` (what
one forward pass gave: scores, decisions, and the PNGs of maps and overlays on demand).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import anomalign
from anomalign.calibration import Calibration
from anomalign.methods.base import Detector
from anomalign.results import Prediction
from anomalign.service.images import encode_png
from anomalign.viz.render import UNTRAINED_MARK

#: Maps are computed at each image's own size (long side capped at 1024).
MAP_SIZE = "image"
#: The warning every untrained-backbone result carries (the overlays' red line).
UNTRAINED_WARNING = UNTRAINED_MARK
#: Side of the grey image predicted once at start-up to warm a detector up.
WARMUP_SIDE = 64


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars/arrays, paths and tuples made JSON-safe; nan/inf -> None."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str | int | bool) or value is None:
        return value
    return str(value)


@dataclass
class BatchPrediction:
    """The outcome of one forward pass over a batch of images."""

    scores: list[float]
    decisions: list[bool | None]
    _result: Prediction | None

    def map_png(self, index: int) -> bytes:
        """The anomaly map of image ``index`` as a 16-bit grey PNG on the calibrated range."""
        assert self._result is not None
        return encode_png(self._result.map_uint16(index))

    def overlay_png(self, index: int, rgb: np.ndarray) -> bytes:
        """The heatmap overlay (calibrated range, colour bar, untrained mark) as PNG."""
        assert self._result is not None
        return encode_png(self._result.overlay(index, rgb, caption=False))


class ServedDetector:
    """A loaded :class:`~anomalign.Detector` under a name, with what the service needs."""

    def __init__(self, name: str, detector: Detector, source: str | Path | None = None) -> None:
        self.name = name
        self.detector = detector
        self.source = None if source is None else str(source)

    @property
    def threshold(self) -> float | None:
        """The decision threshold (anomalous when score >= it), or None."""
        threshold = self.detector.threshold
        return None if threshold is None else float(threshold.value)

    @property
    def untrained_backbone(self) -> bool:
        return bool(self.detector.untrained_backbone)

    @property
    def calibration(self) -> Calibration:
        """The detector's calibration: map range, normal scores, confidence rule."""
        return self.detector.calibration

    def describe(self) -> dict[str, Any]:
        """JSON-safe listing entry: method, backbone, threshold, calibration, fit record."""
        described = self.detector.describe()
        calibration = self.detector.calibration
        threshold = self.detector.threshold
        return jsonable(
            {
                "name": self.name,
                "method": described.get("method"),
                "backbone": described.get("backbone"),
                "untrained_backbone": self.untrained_backbone,
                "threshold": None if threshold is None else threshold.to_dict(),
                "calibration": calibration.to_dict(),
                "fit": described.get("fit", {}),
                "options": described.get("options", {}),
                "preset": described.get("preset"),
                "normal_spread": calibration.score_spread,
                "validation_scores": self.validation_scores(),
            }
        )

    def validation_scores(self) -> list[float] | None:
        """The unbiased normal scores the bundle's fit record holds (``anomalign fit``
        stores them), for the FPR of any threshold; None where it has none."""
        scores = self.detector.fit_record.get("normal_scores")
        return None if not scores else [float(s) for s in scores]

    def predict_batch(self, rgbs: Sequence[np.ndarray]) -> BatchPrediction:
        """One forward pass over decoded ``(H, W, 3)`` uint8 images."""
        result = self.detector.predict(list(rgbs), output_size=MAP_SIZE, batch_size=len(rgbs))
        scores = [float(s) for s in np.asarray(result.scores).reshape(-1)]
        if result.decisions is None:
            decisions: list[bool | None] = [None] * len(scores)
        else:
            decisions = [bool(d) for d in np.asarray(result.decisions).reshape(-1)]
        return BatchPrediction(scores, decisions, result)

    def warm_up(self) -> None:
        """Predict one grey image, so the first request does not pay for lazy set-up."""
        self.predict_batch([np.full((WARMUP_SIDE, WARMUP_SIDE, 3), 128, np.uint8)])


def load_served(
    name: str, path: str | Path, *, device: str = "cpu", backbone: Any | None = None
) -> ServedDetector:
    """Load the bundle at ``path`` as detector ``name`` (``backbone``: reuse a loaded one)."""
    detector = anomalign.load_detector(path, device=device, backbone=backbone)
    return ServedDetector(name, detector, path)
