"""The typed records of benchmark units, shared by the runner (writes) and the report (reads).

A unit is one (method, shots, seed, category): :class:`UnitKey` names it and its files,
:class:`PlannedUnit` holds what determines its result (and the hash of that), and
:class:`UnitRecord` is the JSON written to ``units/<method>/k<shots>/<seed>/<category>.json``
when it finishes (its commit mark on resume).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from anomalign.data.fewshot import shots_text

#: Version of the unit file format; part of every unit hash.
UNIT_SCHEMA = 1


@dataclass(frozen=True)
class UnitKey:
    """One unit of work. ``seed`` is None for methods that do not use reference images."""

    method: str
    shots: int
    seed: int | None
    category: str

    @property
    def seed_dir(self) -> str:
        return "no-seed" if self.seed is None else f"seed{self.seed}"

    @property
    def label(self) -> str:
        seed = "" if self.seed is None else f" seed {self.seed}"
        return f"{self.method} {shots_text(self.shots)}-shot{seed} · {self.category}"

    def path(self, kind: str, suffix: str) -> Path:
        """Relative path of one of the unit's files (``kind``: units, scores, maps)."""
        name = self.category.replace("/", "_") + suffix
        return Path(kind) / self.method / f"k{shots_text(self.shots)}" / self.seed_dir / name

    def overlay_path(self) -> Path:
        """Relative path of the unit's overlay figure (one per method, shots, category)."""
        return (
            Path("overlays") / self.method / f"k{shots_text(self.shots)}" / f"{self.category}.png"
        )


@dataclass(frozen=True)
class PlannedUnit:
    """A unit with everything that determines its result, and the hash of that."""

    key: UnitKey
    options: dict[str, Any]
    eval_size: int
    eval_aspect: str
    shot_files: tuple[str, ...]
    overlay: bool
    hash: str


class UnitRecord(TypedDict):
    """The result file of a finished unit (JSON)."""

    schema: int
    hash: str
    method: str
    shots: int
    seed: int | None
    category: str
    options: dict[str, Any]
    method_info: dict[str, Any]
    untrained_backbone: bool
    shot_files: list[str]
    eval: dict[str, Any]
    n_test: int
    n_anomalous: int
    metrics: dict[str, Any]
    pixel_skipped: str | None
    map_range: list[float]
    fit: dict[str, Any]
    inference: dict[str, Any]
    device: str
    device_name: str
    precision: str
    anomalign_version: str
    files: dict[str, str | None]
    finished: str
