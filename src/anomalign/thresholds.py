"""Decision thresholds on image scores: manual, at a false-positive rate, or F1-optimal.

Every threshold uses one decision rule: an image is **anomalous when its score is
>= the threshold** (the rule of :func:`anomalign.metrics.image_metrics`' ``f1_threshold``).
A threshold is stored in a detector bundle as ``extra["threshold"]`` (see
:meth:`Threshold.to_dict`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from anomalign.errors import ConfigError

ThresholdMode = Literal["manual", "fpr", "f1"]
MODES: tuple[str, ...] = ("manual", "fpr", "f1")


@dataclass(frozen=True)
class Threshold:
    """A decision threshold with where it came from.

    Attributes:
        value: images scoring ``>= value`` are anomalous.
        mode: "manual", "fpr" (from normal validation scores) or "f1" (labelled validation).
        fpr: the target false-positive rate (mode "fpr" only).
        source: free text naming the images or the person that set it.
        stats: what the threshold achieves on its validation images (e.g. ``achieved_fpr``,
            ``f1``, ``n_normal``), and any caveat under ``note``.
    """

    value: float
    mode: ThresholdMode = "manual"
    fpr: float | None = None
    source: str = ""
    stats: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"Threshold mode must be one of {MODES}, got '{self.mode}'.")
        if not math.isfinite(float(self.value)):
            raise ConfigError(f"Threshold value must be a finite number, got {self.value}.")
        object.__setattr__(self, "value", float(self.value))

    def decide(self, scores: Any) -> np.ndarray:
        """Boolean decisions (True = anomalous) for an array of scores."""
        return np.asarray(scores, dtype=np.float64) >= self.value

    def to_dict(self) -> dict[str, Any]:
        """JSON form stored in bundles and run summaries."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Threshold | None:
        """Inverse of :meth:`to_dict`; ``None`` stays ``None``."""
        if not data:
            return None
        return cls(
            value=data["value"],
            mode=data.get("mode", "manual"),
            fpr=data.get("fpr"),
            source=data.get("source", ""),
            stats=dict(data.get("stats", {})),
        )


def manual_threshold(value: float, source: str = "set by hand") -> Threshold:
    """A threshold given by the user."""
    return Threshold(float(value), "manual", source=source)


def _finite_scores(scores: Any, what: str) -> np.ndarray:
    array = np.asarray(scores, dtype=np.float64).reshape(-1)
    if array.size == 0:
        raise ConfigError(f"No {what} to set a threshold from.")
    if not np.all(np.isfinite(array)):
        raise ConfigError(f"The {what} contain nan or inf values.")
    return array


def threshold_at_fpr(normal_scores: Any, fpr: float, source: str = "") -> Threshold:
    """The threshold that flags at most a fraction ``fpr`` of normal validation images.

    Rule: with the ``n`` normal scores sorted, ``s_1 <= ... <= s_n``, at most
    ``k = floor(fpr * n)`` of them may be flagged. The threshold lies strictly above
    ``s_(n-k)``: halfway to the next larger distinct normal score when there is one, else
    just above it (the next float). With ties fewer than ``k`` images may be flagged; with
    ``n < 1 / fpr`` no normal image is flagged (``k = 0``: just above the largest score),
    which the threshold's ``stats["note"]`` says.
    """
    if not 0.0 <= fpr < 1.0:
        raise ConfigError(f"The false-positive rate must be in [0, 1), got {fpr}.")
    scores = np.sort(_finite_scores(normal_scores, "normal validation scores"))
    n = scores.size
    allowed = math.floor(fpr * n + 1e-9)
    pivot = float(scores[n - allowed - 1])
    above = scores[scores > pivot]
    value = (pivot + float(above[0])) / 2.0 if above.size else float(np.nextafter(pivot, np.inf))
    if not value > pivot:  # halfway between two adjacent floats rounds down onto the pivot
        value = float(np.nextafter(pivot, np.inf))
    flagged = int(np.count_nonzero(scores >= value))
    stats: dict[str, Any] = {"n_normal": n, "allowed_false_positives": allowed}
    stats["achieved_fpr"] = flagged / n
    if fpr > 0 and n * fpr < 1:
        stats["note"] = (
            f"{n} normal images cannot resolve a {fpr:g} false-positive rate (needs at least "
            f"{math.ceil(1 / fpr)}); the threshold sits just above the highest normal score."
        )
    return Threshold(value, "fpr", fpr=float(fpr), source=source, stats=stats)


def threshold_f1(labels: Any, scores: Any, source: str = "") -> Threshold:
    """The F1-optimal threshold on a labelled validation set (0 normal, 1 anomalous)."""
    from anomalign.metrics import image_metrics

    y = np.asarray(labels).reshape(-1)
    s = _finite_scores(scores, "validation scores")
    if y.shape != s.shape:
        raise ConfigError(f"{y.size} labels but {s.size} scores for the F1 threshold.")
    n_pos = int(np.count_nonzero(y == 1))
    n_neg = int(np.count_nonzero(y == 0))
    if n_pos == 0 or n_neg == 0:
        raise ConfigError(
            "An F1-optimal threshold needs labelled normal and anomalous validation images "
            f"(got {n_neg} normal and {n_pos} anomalous)."
        )
    metrics = image_metrics(y, s)
    # The metrics rank float32 scores; take the smallest given score at or above their
    # threshold so that ``score >= value`` flags exactly the same validation images.
    flagged = s.astype(np.float32) >= np.float32(metrics.f1_threshold)
    value = float(s[flagged].min())
    stats = {
        "f1": metrics.f1_max,
        "n_normal": n_neg,
        "n_anomalous": n_pos,
        "achieved_fpr": float(np.count_nonzero(s[y == 0] >= value)) / n_neg,
        "achieved_tpr": float(np.count_nonzero(s[y == 1] >= value)) / n_pos,
    }
    return Threshold(value, "f1", source=source, stats=stats)
