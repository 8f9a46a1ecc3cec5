"""The one result type: it flows from a method to metrics, reports, predict runs and services.

A :class:`Prediction` holds image scores, pixel maps and, when the detector has a decision
threshold, the decisions; with the detector's map :class:`~anomalign.calibration.Calibration`
it also renders overlays and 16-bit maps on that fixed range.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from anomalign.calibration import Calibration
from anomalign.data.images import ImageInput, load_mask, load_rgb
from anomalign.viz.render import render_overlay


@dataclass
class Prediction:
    """Image scores and pixel anomaly maps for a batch of images, with provenance.

    Attributes:
        scores: ``(B,)`` float32 image-level anomaly scores (higher = more anomalous).
        maps: ``(B, H, W)`` float32 maps when all share one size, else a list of ``(H_i, W_i)``
            float32 maps (one per image, e.g. each at its image's own size).
        decisions: ``(B,)`` bool, True = anomalous (``score >= threshold``); None without a
            threshold.
        threshold: the decision threshold used, or None.
        calibration: the detector's fixed map range (None: the nominal range [0, 1]).
        info: what produced them: method, preset, options, backbone, and the
            ``untrained_backbone`` flag (True when the backbone had random weights).
    """

    scores: np.ndarray
    maps: np.ndarray | list[np.ndarray]
    info: dict[str, Any] = field(default_factory=dict)
    decisions: np.ndarray | None = None
    threshold: float | None = None
    calibration: Calibration | None = None

    def __post_init__(self) -> None:
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if isinstance(self.maps, list | tuple):
            maps = [np.asarray(m, dtype=np.float32) for m in self.maps]
            if maps and len({m.shape for m in maps}) == 1:
                self.maps = np.stack(maps)
            else:
                self.maps = maps
        else:
            self.maps = np.asarray(self.maps, dtype=np.float32)
            if self.maps.ndim != 3:
                raise ValueError(f"maps must be (B, H, W), got shape {self.maps.shape}")
        if any(np.ndim(m) != 2 for m in self.maps):
            raise ValueError("every map must be two-dimensional (H, W)")
        if len(self.maps) != self.scores.shape[0]:
            raise ValueError(f"{len(self.maps)} maps do not match {self.scores.shape[0]} scores")
        if self.decisions is not None:
            self.decisions = np.asarray(self.decisions, dtype=bool).reshape(-1)
            if self.decisions.shape != self.scores.shape:
                raise ValueError("decisions must have one entry per score")

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def untrained_backbone(self) -> bool:
        """True when these outputs come from a randomly initialised backbone."""
        return bool(self.info.get("untrained_backbone", False))

    @property
    def stacked(self) -> bool:
        """True when every map has the same size (``maps`` is one array)."""
        return isinstance(self.maps, np.ndarray)

    def decide(self, threshold: float | None) -> Prediction:
        """Set (or with None, clear) the threshold and the decisions it gives; returns self."""
        self.threshold = None if threshold is None else float(threshold)
        self.decisions = None if threshold is None else self.scores >= float(threshold)
        return self

    def decision(self, index: int) -> str | None:
        """ "anomalous", "normal", or None without a threshold."""
        if self.decisions is None:
            return None
        return "anomalous" if self.decisions[index] else "normal"

    @property
    def _calibration(self) -> Calibration:
        return self.calibration or Calibration()

    def normalized_map(self, index: int) -> np.ndarray:
        """Map ``index`` on the calibrated scale (0 = median normal pixel); not clipped."""
        return self._calibration.normalize(self.maps[index])

    def map_uint16(self, index: int) -> np.ndarray:
        """Map ``index`` as uint16 on the calibrated range (:meth:`Calibration.to_uint16`)."""
        return self._calibration.to_uint16(self.maps[index])

    def caption(self, index: int) -> str:
        """Score and decision as one line of text."""
        text = f"score {float(self.scores[index]):.4g}"
        if self.threshold is not None and self.decisions is not None:
            verdict = "ANOMALOUS" if self.decisions[index] else "normal"
            text += f"  {verdict} (t={self.threshold:.4g})"
        return text

    def overlay(
        self,
        index: int,
        image: ImageInput,
        mask: ImageInput | None = None,
        cmap: str = "jet",
        alpha: float = 0.5,
        colorbar: bool = True,
        caption: bool = True,
        max_side: int | None = None,
    ) -> np.ndarray:
        """The overlay panel of image ``index`` (pass the same image given to predict)."""
        extra = {} if max_side is None else {"max_side": max_side}
        return render_overlay(
            load_rgb(image),
            self.maps[index],
            self._calibration,
            cmap=cmap,
            alpha=alpha,
            colorbar=colorbar,
            mask=None if mask is None else load_mask(mask),
            caption=self.caption(index) if caption else None,
            untrained=self.untrained_backbone,
            **extra,
        )

    @staticmethod
    def concat(parts: Sequence[Prediction]) -> Prediction:
        """Join predictions made in several batches with the same detector."""
        if not parts:
            raise ValueError("no predictions to join")
        maps = [m for p in parts for m in p.maps]
        decisions = None
        if all(p.decisions is not None for p in parts):
            decisions = np.concatenate([p.decisions for p in parts])  # type: ignore[misc]
        first = parts[0]
        return Prediction(
            np.concatenate([p.scores for p in parts]),
            maps,
            dict(first.info),
            decisions,
            first.threshold,
            first.calibration,
        )
