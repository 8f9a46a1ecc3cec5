"""BTAD: ``<cat>/{train/ok, test/ok, test/ko, ground_truth/ko}``; ``.bmp`` and ``.png`` mixed.

``ok`` is normal and ``ko`` anomalous; masks are paired with images by file stem because
the two may have different extensions. Normal images get the defect type ``good``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from anomalign.data.layouts._common import (
    list_subdirs,
    load_tree_category,
    require_dir,
    select_categories,
)
from anomalign.data.sample import Sample

NAME = "btad"


def _is_category(folder: Path) -> bool:
    return (folder / "train" / "ok").is_dir() or (folder / "test" / "ko").is_dir()


def _products(root: Path) -> list[str]:
    require_dir(root, "a BTAD root with one folder per product")
    return [d.name for d in list_subdirs(root) if _is_category(d)]


def categories(root: str | Path) -> list[str]:
    """Product folders (``01``, ``02``, ``03`` in the original) under a BTAD root."""
    return _products(Path(root))


def detect(root: Path) -> bool:
    """True when some sub-folder has ``train/ok`` or ``test/ko``."""
    return bool(categories(root))


def load_btad(
    root: str | Path, categories: Iterable[str] | None = None, *, require_masks: bool = True
) -> list[Sample]:
    """Read a BTAD tree; anomalous images have the defect type ``ko``."""
    root = require_dir(Path(root), "a BTAD root with one folder per product")
    chosen = select_categories(_products(root), categories, root, NAME)
    samples: list[Sample] = []
    for name in chosen:
        samples += load_tree_category(
            root / name, name, normal_name="ok", require_masks=require_masks, layout=NAME
        )
    return samples


load = load_btad
