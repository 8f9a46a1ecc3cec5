"""MVTec AD: ``<cat>/{train/good, test/good, test/<defect>, ground_truth/<defect>/*_mask.png}``."""

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

NAME = "mvtec"


def is_tree_category(folder: Path, normal_name: str = "good") -> bool:
    """A folder shaped like one MVTec-style category (``test/`` plus normal or mask folders)."""
    return (folder / "test").is_dir() and (
        (folder / "train" / normal_name).is_dir()
        or (folder / "test" / normal_name).is_dir()
        or (folder / "ground_truth").is_dir()
    )


def tree_categories(root: Path, normal_name: str = "good") -> list[str]:
    """Names of the MVTec-style category folders directly under ``root``."""
    require_dir(Path(root), "a dataset root folder")
    return [d.name for d in list_subdirs(Path(root)) if is_tree_category(d, normal_name)]


def categories(root: str | Path) -> list[str]:
    """Category folders found under an MVTec AD root."""
    return tree_categories(Path(root))


def detect(root: Path) -> bool:
    """True when ``root`` holds at least one MVTec-style category folder."""
    return bool(categories(root))


def load_mvtec(
    root: str | Path, categories: Iterable[str] | None = None, *, require_masks: bool = True
) -> list[Sample]:
    """Read an MVTec AD tree (also MVTec-style trees such as VisA's prepared ``1cls``)."""
    root = require_dir(Path(root), "an MVTec AD root with one folder per category")
    chosen = select_categories(tree_categories(root), categories, root, NAME)
    samples: list[Sample] = []
    for name in chosen:
        samples += load_tree_category(root / name, name, require_masks=require_masks, layout=NAME)
    return samples


load = load_mvtec
