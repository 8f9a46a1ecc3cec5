"""The one result type that flows from a method to metrics, reports and heatmaps."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Prediction:
    """Image scores and pixel anomaly maps for a batch of images, with provenance.

    Attributes:
        scores: ``(B,)`` float32 image-level anomaly scores (higher = more anomalous).
        maps: ``(B, H, W)`` float32 pixel anomaly maps at the requested output size.
        info: what produced them: method, preset, options, backbone, and the
            ``untrained_backbone`` flag (True when the backbone had random weights).
    """

    scores: np.ndarray
    maps: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        self.maps = np.asarray(self.maps, dtype=np.float32)
        if self.maps.ndim != 3 or self.maps.shape[0] != self.scores.shape[0]:
            raise ValueError(
                f"maps of shape {self.maps.shape} do not match {self.scores.shape[0]} scores"
            )

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def untrained_backbone(self) -> bool:
        """True when these outputs come from a randomly initialised backbone."""
        return bool(self.info.get("untrained_backbone", False))

    @staticmethod
    def concat(parts: list[Prediction]) -> Prediction:
        """Join predictions made in several batches with the same settings."""
        if not parts:
            raise ValueError("no predictions to join")
        return Prediction(
            np.concatenate([p.scores for p in parts]),
            np.concatenate([p.maps for p in parts]),
            dict(parts[0].info),
        )
