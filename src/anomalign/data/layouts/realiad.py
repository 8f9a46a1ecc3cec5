"""Real-IAD through its official JSON meta files.

Layout: ``<root>/realiad_jsons/<cat>.json`` (or ``realiad_jsons_sv``,
``realiad_jsons_fuiad_<r>``) and images under ``<root>/realiad_{1024,512,256,raw}/``.
Each JSON is ``{"meta": {"prefix": ..., "normal_class": "OK"}, "train": [...], "test": [...]}``
and every entry has ``category``, ``anomaly_class``, ``image_path`` and ``mask_path``.
Paths are ``<image dir>/<prefix>/<image_path>``. An entry is normal when its ``mask_path``
is null or its ``anomaly_class`` equals ``normal_class`` (an NG object seen from a camera
that cannot see the defect is OK); the defect type of the others is their
``anomaly_class``. Camera views (``C1``..``C5``, parsed from the file name) are selectable.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from anomalign.data.layouts._common import require_dir, select_categories
from anomalign.data.sample import NORMAL_DEFECT_TYPE, Sample
from anomalign.errors import DataError

NAME = "realiad"
DEFAULT_JSON_DIR = "realiad_jsons"
#: Image folders tried in this order when none is given.
IMAGE_DIRS: tuple[str, ...] = ("realiad_1024", "realiad_512", "realiad_256", "realiad_raw")
ENTRY_KEYS: tuple[str, ...] = ("category", "anomaly_class", "image_path", "mask_path")
VIEWS: tuple[str, ...] = ("C1", "C2", "C3", "C4", "C5")
_VIEW_PATTERN = re.compile(r"_(C[1-9])_")


def _json_dir(root: Path, json_dir: str | Path) -> Path:
    return require_dir(
        root / json_dir, f"Real-IAD JSON meta files ('{DEFAULT_JSON_DIR}/<category>.json')"
    )


def categories(root: str | Path, json_dir: str | Path = DEFAULT_JSON_DIR) -> list[str]:
    """Categories with a JSON meta file in ``json_dir``."""
    root = require_dir(Path(root), "a Real-IAD root")
    return sorted(p.stem for p in _json_dir(root, json_dir).glob("*.json"))


def detect(root: Path) -> bool:
    """True when ``root`` has a ``realiad_jsons*`` folder holding JSON files."""
    return any(
        d.is_dir() and d.name.startswith(DEFAULT_JSON_DIR) and any(d.glob("*.json"))
        for d in root.iterdir()
    )


def view_of(path: Path) -> str | None:
    """The camera view (``C1``..``C5``) named in a Real-IAD file name, or None."""
    match = _VIEW_PATTERN.search(path.name)
    return match.group(1) if match else None


def _normalise_views(views: Iterable[str | int] | None) -> set[str] | None:
    if views is None:
        return None
    chosen = {f"C{v}" if isinstance(v, int) or str(v).isdigit() else str(v).upper() for v in views}
    unknown = chosen - set(VIEWS)
    if unknown:
        raise DataError(f"Unknown Real-IAD camera view(s) {sorted(unknown)}; expected {VIEWS}.")
    return chosen


def _image_root(root: Path, image_dir: str | Path | None) -> Path:
    if image_dir is not None:
        return require_dir(root / image_dir, "a Real-IAD image folder (e.g. realiad_1024)")
    for name in IMAGE_DIRS:
        if (root / name).is_dir():
            return root / name
    raise DataError(
        f"No Real-IAD image folder under '{root}'; expected one of {', '.join(IMAGE_DIRS)}."
    )


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"Cannot read Real-IAD meta file '{path}': {error}.") from error
    if not isinstance(data, dict) or not {"meta", "train", "test"} <= data.keys():
        raise DataError(
            f"Real-IAD meta file '{path}' must be an object with keys 'meta', 'train' and 'test'."
        )
    if not isinstance(data["meta"], dict) or "prefix" not in data["meta"]:
        raise DataError(f"'meta' in '{path}' must be an object with a 'prefix' key.")
    return data


def _load_category(
    path: Path, category: str, image_root: Path, views: set[str] | None
) -> list[Sample]:
    data = _read_meta(path)
    base = image_root / str(data["meta"]["prefix"] or "")
    normal_class = data["meta"].get("normal_class", "OK")
    samples: list[Sample] = []
    for split in ("train", "test"):
        entries = data[split]
        if not isinstance(entries, list):
            raise DataError(f"'{split}' in '{path}' must be a list of entries.")
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict) or not set(ENTRY_KEYS) <= entry.keys():
                raise DataError(
                    f"Entry {index} of '{split}' in '{path}' must have the keys "
                    f"{', '.join(ENTRY_KEYS)}."
                )
            image = base / entry["image_path"]
            view = view_of(image)
            if views is not None and view not in views:
                continue
            if not image.is_file():
                raise DataError(f"Image '{image}' ({split} entry {index} of '{path}') is missing.")
            mask_path = entry["mask_path"]
            if mask_path is None or entry["anomaly_class"] == normal_class:
                samples.append(Sample(image, category, split, 0, NORMAL_DEFECT_TYPE))
                continue
            mask = base / mask_path
            if not mask.is_file():
                raise DataError(
                    f"Mask '{mask}' of anomalous image '{image}' ({split} entry {index} of "
                    f"'{path}') is missing."
                )
            samples.append(Sample(image, category, split, 1, str(entry["anomaly_class"]), (mask,)))
    return samples


def load_realiad(
    root: str | Path,
    categories: Iterable[str] | None = None,
    *,
    json_dir: str | Path = DEFAULT_JSON_DIR,
    image_dir: str | Path | None = None,
    views: Iterable[str | int] | None = None,
) -> list[Sample]:
    """Read Real-IAD; ``views`` keeps only some cameras (e.g. ``["C1"]`` or ``[1, 3]``).

    ``json_dir`` picks the setting (``realiad_jsons`` multi-view, ``realiad_jsons_sv``
    single-view, ``realiad_jsons_fuiad_0.1`` noisy training); ``image_dir`` the
    resolution folder (default: the first of :data:`IMAGE_DIRS` that exists).
    """
    root = require_dir(Path(root), "a Real-IAD root holding realiad_jsons/ and realiad_<size>/")
    jdir = _json_dir(root, json_dir)
    available = sorted(p.stem for p in jdir.glob("*.json"))
    chosen = select_categories(available, categories, jdir, NAME)
    image_root = _image_root(root, image_dir)
    wanted = _normalise_views(views)
    samples: list[Sample] = []
    for name in chosen:
        samples += _load_category(jdir / f"{name}.json", name, image_root, wanted)
    return samples


load = load_realiad
