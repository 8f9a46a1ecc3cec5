"""A calibrated confidence in each decision, from the detector's normal score range.

The bundle's calibration records the median (``score_low``) and the largest
(``score_high``) image score of its normal calibration images; their difference, the
*normal spread*, is the unit in which a score's distance from the threshold is measured:

* ``margin = (score - threshold) / (score_high - score_low)``: 0 on the threshold,
  +1 one normal spread above it (anomalous side), -1 one spread below it;
* ``confidence = 1 / (1 + 9 ** -|margin|)``: 0.5 on the threshold, 0.9 one normal spread
  away from it, 0.99 about two spreads away. It is the confidence in the decision made,
  whichever side it falls on.

Without a threshold, or without normal scores (an uncalibrated bundle, or a single
calibration image, whose spread is 0), both are ``None``. The web page recomputes both
with the same rule when its slider moves the threshold.
"""

from __future__ import annotations

import math

CONFIDENCE_RULE = (
    "margin = (score - threshold) / (score_high - score_low) with score_low/score_high the "
    "median/largest normal calibration score; confidence = 1 / (1 + 9 ** -|margin|): 0.5 at "
    "the threshold, 0.9 one normal spread away"
)


def normal_spread(score_low: float | None, score_high: float | None) -> float | None:
    """``score_high - score_low`` when both are known and the spread is positive."""
    if score_low is None or score_high is None:
        return None
    spread = float(score_high) - float(score_low)
    return spread if math.isfinite(spread) and spread > 0 else None


def margin(score: float, threshold: float | None, spread: float | None) -> float | None:
    """The score's distance from the threshold in normal spreads (positive = anomalous side)."""
    if threshold is None or spread is None:
        return None
    return (float(score) - float(threshold)) / spread


def confidence(score: float, threshold: float | None, spread: float | None) -> float | None:
    """Confidence in the decision at ``threshold``, in [0.5, 1] (see the module docstring)."""
    distance = margin(score, threshold, spread)
    if distance is None:
        return None
    exponent = -abs(distance) * math.log(9.0)
    return 1.0 / (1.0 + math.exp(max(exponent, -700.0)))
