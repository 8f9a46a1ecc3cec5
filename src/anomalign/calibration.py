"""A fixed anomaly-map range from normal images, so heatmaps compare across images.

Maps are never normalised per image: per-image min-max scaling stretches the noise of
a perfect part over the whole colour scale and makes every image look anomalous. The
range is set once, from the maps of normal images, and stored in the bundle as
``extra["calibration"]``:

* ``map_low`` = the median normal pixel (``low_quantile``): typical normal texture is
  drawn at the bottom of the colour scale;
* ``map_high`` = ``map_low + headroom * (q - map_low)`` with ``q`` the ``high_quantile``
  (99.9th percentile) of normal pixels: the brightest normal pixels land in the middle
  of the scale (``headroom=2``), so anomalies stronger than anything normal stand out.

``score_low`` / ``score_high`` are the median and the largest normal image score, for
reading a score without a threshold ("above every normal calibration image"). Their
difference, the *normal spread*, is the unit of the one confidence every output reports
(service replies, the web page, local predict rows, Ray's Parquet rows):

* ``margin = (score - threshold) / (score_high - score_low)``: 0 on the threshold, +1 one
  normal spread above it (anomalous side), -1 one spread below it;
* ``confidence = 1 / (1 + 9 ** -|margin|)``: the confidence in the decision made,
  whichever side it falls on: 0.5 on the threshold, 0.9 one normal spread away, 0.99
  about two spreads away. None without a threshold or a positive spread.

Without normal images the method's nominal range [0, 1] is used (``source`` says so).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from anomalign.errors import ConfigError

LOW_QUANTILE = 0.5
HIGH_QUANTILE = 0.999
HEADROOM = 2.0
#: Largest number of pixels drawn (evenly spaced) from the normal maps for the quantiles.
MAX_PIXELS = 4_000_000
UNCALIBRATED = "uncalibrated: nominal range [0, 1], no normal images were given"
CONFIDENCE_RULE = (
    "margin = (score - threshold) / (score_high - score_low) with score_low/score_high the "
    "median/largest normal calibration score; confidence = 1 / (1 + 9 ** -|margin|): the "
    "confidence in the decision, 0.5 at the threshold, 0.9 one normal spread away"
)


@dataclass(frozen=True)
class Calibration:
    """The fixed display range of maps and the normal range of image scores."""

    map_low: float = 0.0
    map_high: float = 1.0
    score_low: float | None = None
    score_high: float | None = None
    n_images: int = 0
    source: str = UNCALIBRATED
    rule: str = ""

    def __post_init__(self) -> None:
        if not (np.isfinite(self.map_low) and np.isfinite(self.map_high)):
            raise ConfigError(f"Calibration range [{self.map_low}, {self.map_high}] is not finite.")
        if self.map_high <= self.map_low:
            raise ConfigError(
                f"Calibration map_high ({self.map_high}) must exceed map_low ({self.map_low})."
            )

    @property
    def calibrated(self) -> bool:
        """True when the range comes from normal images."""
        return self.n_images > 0

    @property
    def score_spread(self) -> float | None:
        """``score_high - score_low`` when both are known and it is positive, else None."""
        if self.score_low is None or self.score_high is None:
            return None
        spread = float(self.score_high) - float(self.score_low)
        return spread if math.isfinite(spread) and spread > 0 else None

    def margin(self, score: float, threshold: float | None) -> float | None:
        """The score's distance from ``threshold`` in normal spreads (positive: the
        anomalous side); None without a threshold, a spread or a finite score."""
        spread = self.score_spread
        if threshold is None or spread is None or not math.isfinite(score):
            return None
        return (float(score) - float(threshold)) / spread

    def confidence(self, score: float, threshold: float | None) -> float | None:
        """Confidence in the decision at ``threshold``, in [0.5, 1] (module docs)."""
        distance = self.margin(score, threshold)
        if distance is None:
            return None
        return 1.0 / (1.0 + math.exp(max(-abs(distance) * math.log(9.0), -700.0)))

    def normalize(self, amap: np.ndarray) -> np.ndarray:
        """Map values to the calibrated scale, 0 at ``map_low`` and 1 at ``map_high``
        (not clipped)."""
        return (np.asarray(amap, np.float32) - self.map_low) / (self.map_high - self.map_low)

    def to_uint16(self, amap: np.ndarray) -> np.ndarray:
        """Encode a map as uint16: ``round(clip(normalize(v), 0, 1) * 65535)``."""
        scaled = np.clip(self.normalize(amap), 0.0, 1.0) * 65535.0
        return np.rint(scaled).astype(np.uint16)

    def from_uint16(self, encoded: np.ndarray) -> np.ndarray:
        """Decode :meth:`to_uint16` (values outside the range come back clipped to it)."""
        unit = np.asarray(encoded, np.float64) / 65535.0
        return (self.map_low + unit * (self.map_high - self.map_low)).astype(np.float32)

    def uint16_rule(self) -> str:
        """The uint16 encoding in words, recorded in predict summaries."""
        return (
            f"uint16 = round(clip((v - {self.map_low!r}) / ({self.map_high!r} - "
            f"{self.map_low!r}), 0, 1) * 65535)"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON form stored in bundles."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Calibration:
        """Inverse of :meth:`to_dict`; a missing calibration gives the nominal range."""
        if not data:
            return cls()
        known = {"map_low", "map_high", "score_low", "score_high", "n_images", "source", "rule"}
        return cls(**{k: v for k, v in data.items() if k in known})


def _pixel_sample(maps: list[np.ndarray] | np.ndarray) -> np.ndarray:
    flat = np.concatenate([np.asarray(m, np.float32).reshape(-1) for m in maps])
    if flat.size > MAX_PIXELS:
        flat = flat[:: -(-flat.size // MAX_PIXELS)]
    return flat


def calibrate(
    maps: list[np.ndarray] | np.ndarray,
    scores: Any,
    source: str = "normal images",
    low_quantile: float = LOW_QUANTILE,
    high_quantile: float = HIGH_QUANTILE,
    headroom: float = HEADROOM,
) -> Calibration:
    """Fixed map range and normal score range from the maps and scores of normal images."""
    if len(maps) == 0:
        raise ConfigError("Calibration needs the maps of at least one normal image.")
    if not 0.0 <= low_quantile < high_quantile <= 1.0 or headroom < 1.0:
        raise ConfigError(
            "Calibration needs 0 <= low_quantile < high_quantile <= 1 and headroom >= 1."
        )
    pixels = _pixel_sample(maps)
    if not np.all(np.isfinite(pixels)):
        raise ConfigError("The normal images' anomaly maps contain nan or inf values.")
    low, high_q = (float(v) for v in np.quantile(pixels, [low_quantile, high_quantile]))
    spread = max(high_q - low, 1e-6 * max(1.0, abs(low)))
    score_array = np.asarray(scores, np.float64).reshape(-1)
    return Calibration(
        map_low=low,
        map_high=low + headroom * spread,
        score_low=float(np.median(score_array)) if score_array.size else None,
        score_high=float(score_array.max()) if score_array.size else None,
        n_images=len(maps),
        source=source,
        rule=(
            f"map_low = q{low_quantile:g} of normal pixels; map_high = map_low + {headroom:g} "
            f"* (q{high_quantile:g} - map_low); score_low/high = median/max normal score"
        ),
    )
