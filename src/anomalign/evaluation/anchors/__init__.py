"""Published numbers kept as data (``published.json``), to print beside a run's results.

Each result row names its method, dataset, shots, metrics (in %), source, whether it is
the authors' own number ("paper") or someone else's run ("re-run"), whether it comes from
a secondary compilation, and which anomalign methods it corresponds to (``ours``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any


@dataclass(frozen=True)
class Anchor:
    """One published result: means over categories, in %."""

    method: str
    dataset: str
    shots: int
    kind: str
    metrics: dict[str, float]
    source: str
    ours: tuple[str, ...] = ()
    protocol: str | None = None
    secondary: bool = False
    note: str | None = None


@dataclass(frozen=True)
class SpeedAnchor:
    """One published inference time."""

    method: str
    ms_per_image: float
    setting: str
    hardware: str
    source: str
    ours: tuple[str, ...] = ()


@dataclass(frozen=True)
class AnchorTable:
    """All published results and speeds."""

    results: tuple[Anchor, ...]
    speed: tuple[SpeedAnchor, ...]
    metric_names: dict[str, str] = field(default_factory=dict)

    def for_run(self, dataset: str, shots: int, method: str) -> list[Anchor]:
        """Published numbers of ``method`` itself (``ours``) on ``dataset`` at ``shots``."""
        return [
            a
            for a in self.results
            if a.dataset == dataset and a.shots == shots and method in a.ours
        ]

    def context(self, dataset: str, shots: int, exclude: tuple[str, ...] = ()) -> list[Anchor]:
        """Other published methods on ``dataset`` at ``shots`` (for context)."""
        return [
            a
            for a in self.results
            if a.dataset == dataset and a.shots == shots and not set(a.ours) & set(exclude)
        ]

    def speed_for(self, method: str) -> list[SpeedAnchor]:
        """Published speeds of ``method`` itself."""
        return [s for s in self.speed if method in s.ours]


def _anchor(data: dict[str, Any]) -> Anchor:
    values = dict(data)
    values["ours"] = tuple(values.get("ours", ()))
    values["metrics"] = {k: float(v) for k, v in values["metrics"].items()}
    return Anchor(**values)


@cache
def load_anchors() -> AnchorTable:
    """The shipped table of published numbers."""
    text = resources.files(__name__).joinpath("published.json").read_text(encoding="utf-8")
    data = json.loads(text)
    speed = tuple(
        SpeedAnchor(**{**s, "ours": tuple(s.get("ours", ()))}) for s in data.get("speed", ())
    )
    return AnchorTable(
        results=tuple(_anchor(r) for r in data["results"]),
        speed=speed,
        metric_names=dict(data.get("metric_names", {})),
    )
