"""k-shot reference sampling, reproducible across runs, machines and Python versions.

The candidates (normal training images of one category) are keyed by their path relative
to the candidates' common folder, so the choice does not depend on where the dataset lives
nor on the order the files were listed. Each key is ranked by ``sha256(f"{seed}:{key}")``
and the first ``k`` are taken. Hashing (rather than ``random``) keeps the choice fixed
across Python versions, and ranking makes the selections nested: the 1-shot image of a
seed is the first of its 2-shot images, which are the first two of its 4-shot images.
The chosen files are recorded (:class:`ShotSelection`) so a run can be reproduced, or
given explicitly with :func:`shots_from_files`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anomalign.data.sample import NORMAL_DEFECT_TYPE, Sample
from anomalign.errors import ConfigError, DataError

#: The settings most papers report.
DEFAULT_SHOTS: tuple[int, ...] = (1, 2, 4)
#: ``shots`` value meaning every normal training image ("full-shot"; ``--shots full``).
FULL_SHOT = -1


def shots_text(k: int) -> str:
    """``4`` -> ``"4"``; :data:`FULL_SHOT` -> ``"full"`` (for labels, paths and tables)."""
    return "full" if k == FULL_SHOT else str(k)


def stable_order(keys: Sequence[str], seed: int) -> list[int]:
    """Indices of ``keys`` in a pseudo-random order fixed by ``seed`` (hash ranking)."""
    digests = [hashlib.sha256(f"{seed}:{key}".encode()).hexdigest() for key in keys]
    return sorted(range(len(keys)), key=lambda i: (digests[i], keys[i]))


def _relative_keys(paths: Sequence[Path]) -> list[str]:
    """Paths relative to their common folder, as POSIX strings."""
    if len(paths) == 1:
        return [paths[0].name]
    common = Path(os.path.commonpath([str(p) for p in paths]))
    return [p.relative_to(common).as_posix() for p in paths]


def sample_shots(train_normals: Sequence[Sample], k: int, seed: int = 0) -> list[Sample]:
    """Choose ``k`` reference images among the normal training images of one category.

    Deterministic for a given candidate set and seed (see the module docstring); the
    result is in rank order, so smaller ``k`` give prefixes of larger ones.
    ``k = FULL_SHOT`` takes every candidate (still in the seed's order).
    """
    if isinstance(k, bool) or not isinstance(k, int) or (k < 1 and k != FULL_SHOT):
        raise ConfigError(f"k (the number of shots) must be a positive integer, got {k!r}.")
    candidates = list(train_normals)
    if not candidates:
        raise DataError("No normal training images to draw reference shots from.")
    categories = sorted({s.category for s in candidates})
    if len(categories) > 1:
        raise ConfigError(
            f"Reference shots are drawn per category; got images of {', '.join(categories)}."
        )
    anomalous = [s for s in candidates if s.label != 0 or s.split == "test"]
    if anomalous:
        raise ConfigError(
            f"Reference shots must be normal training images; '{anomalous[0].image_path}' is "
            f"a {anomalous[0].split} image with label {anomalous[0].label}."
        )
    unique = sorted({s.image_path: s for s in candidates}.values(), key=lambda s: s.image_path)
    if k == FULL_SHOT:
        k = len(unique)
    if k > len(unique):
        folder = os.path.commonpath([str(s.image_path.parent) for s in unique])
        raise DataError(
            f"Asked for {k} reference shots of '{categories[0]}' but only {len(unique)} normal "
            f"training images exist (under '{folder}')."
        )
    keys = _relative_keys([s.image_path for s in unique])
    return [unique[i] for i in stable_order(keys, seed)[:k]]


def shots_from_files(
    files: Sequence[str | Path],
    candidates: Sequence[Sample] | None = None,
    *,
    root: str | Path | None = None,
    category: str = "custom",
) -> list[Sample]:
    """Reference shots given explicitly, e.g. the ``files`` of a recorded selection.

    Relative paths are resolved against ``root``. With ``candidates`` (typically a
    dataset's samples) each file must be one of them and keeps its metadata; without,
    each file must exist and becomes a normal training sample of ``category``.
    """
    if not files:
        raise ConfigError("The explicit list of reference shots is empty.")
    base = Path(root) if root is not None else None
    resolved = [Path(f) if Path(f).is_absolute() or base is None else base / f for f in files]
    if candidates is not None:
        index = {os.path.normpath(s.image_path): s for s in candidates}
        shots = []
        for path in resolved:
            sample = index.get(os.path.normpath(path))
            if sample is None:
                raise DataError(
                    f"Reference shot '{path}' is not an image of the dataset; expected one of "
                    "its normal training images."
                )
            shots.append(sample)
        return shots
    for path in resolved:
        if not path.is_file():
            raise DataError(f"Reference shot '{path}' does not exist; expected an image file.")
    return [Sample(p, category, "train", 0, NORMAL_DEFECT_TYPE) for p in resolved]


def shot_record(shots: Sequence[Sample], root: str | Path | None = None) -> list[str]:
    """The chosen files as POSIX paths relative to ``root`` (absolute when outside it)."""
    record = []
    for sample in shots:
        path = sample.image_path
        if root is not None and path.is_relative_to(root):
            record.append(path.relative_to(root).as_posix())
        else:
            record.append(path.as_posix())
    return record


@dataclass(frozen=True)
class ShotSelection:
    """What a result records about its reference images: enough to reproduce them."""

    category: str
    k: int
    seed: int | None
    files: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "category": self.category,
            "k": self.k,
            "seed": self.seed,
            "files": list(self.files),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShotSelection:
        """Inverse of :meth:`to_dict`."""
        files = tuple(str(f) for f in data["files"])
        return cls(str(data["category"]), int(data.get("k", len(files))), data.get("seed"), files)

    @classmethod
    def from_shots(
        cls, shots: Sequence[Sample], seed: int | None, root: str | Path | None = None
    ) -> ShotSelection:
        """Record ``shots`` (drawn with ``seed``, or None for an explicit list)."""
        category = shots[0].category if shots else ""
        return cls(category, len(shots), seed, tuple(shot_record(shots, root)))
