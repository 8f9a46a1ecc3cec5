"""MPDD: the MVTec AD tree with MPDD's six categories."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from anomalign.data.categories import MPDD_CATEGORIES
from anomalign.data.layouts._common import load_tree_category, require_dir, select_categories
from anomalign.data.layouts.mvtec import tree_categories
from anomalign.data.sample import Sample

NAME = "mpdd"


def categories(root: str | Path) -> list[str]:
    """Category folders found under an MPDD root."""
    return tree_categories(Path(root))


def detect(root: Path) -> bool:
    """An MVTec-style tree whose categories are all MPDD's."""
    found = categories(root)
    return bool(found) and set(found) <= set(MPDD_CATEGORIES)


def load_mpdd(
    root: str | Path, categories: Iterable[str] | None = None, *, require_masks: bool = True
) -> list[Sample]:
    """Read an MPDD tree (``train/good``, ``test/<defect>``, ``ground_truth/<defect>``)."""
    root = require_dir(Path(root), "an MPDD root with one folder per category")
    chosen = select_categories(tree_categories(root), categories, root, NAME)
    samples: list[Sample] = []
    for name in chosen:
        samples += load_tree_category(root / name, name, require_masks=require_masks, layout=NAME)
    return samples


load = load_mpdd
