"""ELPV solar cells, as shipped by the ``elpv-dataset`` package (optional extra ``elpv``).

The package installs ``elpv_dataset/data/labels.csv`` (``images/cellNNNN.png``, a defect
probability in {0, 1/3, 2/3, 1}, ``mono`` or ``poly``) next to the 300x300 greyscale PNGs,
so samples point at those installed files and nothing is copied. A folder with the same
``labels.csv`` + ``images/`` shape (the upstream repository) also works.

Labels: probability 0 is normal, probability >= ``threshold`` is anomalous (defect type
``defective``) and cells in between are left out as uncertain. ELPV has no split and no
masks: a seeded fraction of the normal cells of each type (``normal_train_fraction``)
forms the training split, everything else is test.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from pathlib import Path

from anomalign.data.categories import ELPV_CATEGORIES
from anomalign.data.fewshot import stable_order
from anomalign.data.layouts._common import require_dir, select_categories
from anomalign.data.sample import NORMAL_DEFECT_TYPE, Sample
from anomalign.errors import ConfigError, DataError

NAME = "elpv"
LABELS_FILE = "labels.csv"
DEFECT_TYPE = "defective"


def package_root() -> Path:
    """The data folder of the installed ``elpv-dataset`` package."""
    spec = importlib.util.find_spec("elpv_dataset")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "The ELPV data comes from the 'elpv-dataset' package, which is not installed; "
            "install it with `pip install anomalign[elpv]` (or pass the folder holding "
            f"{LABELS_FILE} and images/)."
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def detect(root: Path) -> bool:
    """True when ``root`` holds ``labels.csv`` and an ``images/`` folder."""
    return (root / LABELS_FILE).is_file() and (root / "images").is_dir()


def _read_labels(root: Path) -> list[tuple[Path, float, str]]:
    path = root / LABELS_FILE
    if not path.is_file():
        raise DataError(f"'{path}' does not exist; expected ELPV's labels file next to images/.")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        try:
            image, probability, kind = fields[0], float(fields[1]), fields[2]
        except (IndexError, ValueError) as error:
            raise DataError(
                f"Line {number} of '{path}' is '{line.strip()}'; expected "
                "'images/<file>.png <probability> <mono|poly>'."
            ) from error
        rows.append((root / image, probability, kind))
    return rows


def categories(root: str | Path | None = None) -> list[str]:
    """Cell types present (``mono`` and ``poly``)."""
    base = require_dir(Path(root), "an ELPV folder") if root is not None else package_root()
    found = {kind for _, _, kind in _read_labels(base)}
    return [c for c in ELPV_CATEGORIES if c in found] + sorted(found - set(ELPV_CATEGORIES))


def load_elpv(
    root: str | Path | None = None,
    categories: Iterable[str] | None = None,
    *,
    threshold: float = 0.5,
    normal_train_fraction: float = 0.2,
    seed: int = 0,
) -> list[Sample]:
    """Read ELPV (from the installed package when ``root`` is None)."""
    if not 0.0 < threshold <= 1.0:
        raise ConfigError(f"ELPV threshold must be in (0, 1], got {threshold}.")
    if not 0.0 <= normal_train_fraction < 1.0:
        raise ConfigError(f"normal_train_fraction must be in [0, 1), got {normal_train_fraction}.")
    base = require_dir(Path(root), "an ELPV folder") if root is not None else package_root()
    rows = _read_labels(base)
    available = [c for c in ELPV_CATEGORIES if any(k == c for _, _, k in rows)]
    available += sorted({k for _, _, k in rows} - set(ELPV_CATEGORIES))
    chosen = select_categories(available, categories, base, NAME)
    samples: list[Sample] = []
    for name in chosen:
        normals = sorted(p for p, prob, kind in rows if kind == name and prob == 0.0)
        keys = [p.name for p in normals]
        train = set(stable_order(keys, seed)[: round(normal_train_fraction * len(normals))])
        for index, path in enumerate(normals):
            samples.append(
                Sample(path, name, "train" if index in train else "test", 0, NORMAL_DEFECT_TYPE)
            )
        samples += [
            Sample(p, name, "test", 1, DEFECT_TYPE)
            for p, prob, kind in sorted(rows)
            if kind == name and prob >= threshold
        ]
    missing = next((s.image_path for s in samples if not s.image_path.is_file()), None)
    if missing is not None:
        raise DataError(f"ELPV image '{missing}' listed in '{base / LABELS_FILE}' is missing.")
    return samples


load = load_elpv
