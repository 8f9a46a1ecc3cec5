"""MVTec LOCO AD: several masks per anomalous image, logical vs structural defect types.

``<cat>/{train/good, validation/good, test/{good,logical_anomalies,structural_anomalies}}``
and ``<cat>/ground_truth/<type>/<image stem>/000.png[, 001.png ...]``. The masks of one
image are united on load; the defect type is the test folder name, so logical and
structural anomalies stay apart. ``validation/good`` images get the split ``validation``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from anomalign.data.layouts._common import (
    index_by_stem,
    list_images,
    list_subdirs,
    normal_samples,
    require_dir,
    select_categories,
)
from anomalign.data.sample import Sample
from anomalign.errors import DataError

NAME = "loco"
DEFECT_TYPES: tuple[str, ...] = ("logical_anomalies", "structural_anomalies")


def _is_category(folder: Path) -> bool:
    test = folder / "test"
    return any((test / kind).is_dir() for kind in DEFECT_TYPES) or (
        test.is_dir() and (folder / "validation").is_dir()
    )


def _category_names(root: Path) -> list[str]:
    require_dir(root, "an MVTec LOCO AD root with one folder per category")
    return [d.name for d in list_subdirs(root) if _is_category(d)]


def categories(root: str | Path) -> list[str]:
    """Category folders under an MVTec LOCO AD root."""
    return _category_names(Path(root))


def detect(root: Path) -> bool:
    """True when a sub-folder has ``test/logical_anomalies`` (or similar) or ``validation``."""
    return bool(_category_names(root))


def _load_category(cat_dir: Path, category: str, require_masks: bool) -> list[Sample]:
    test_dir = require_dir(cat_dir / "test", "'test/good' and 'test/<type>_anomalies' folders")
    samples = normal_samples(list_images(cat_dir / "train" / "good"), category, "train")
    samples += normal_samples(list_images(cat_dir / "validation" / "good"), category, "validation")
    known: set[str] = set()
    for defect_dir in list_subdirs(test_dir):
        images = list_images(defect_dir)
        if defect_dir.name == "good":
            samples += normal_samples(images, category, "test")
            continue
        known.add(defect_dir.name)
        by_stem = index_by_stem(images)
        gt_dir = cat_dir / "ground_truth" / defect_dir.name
        for mask_folder in list_subdirs(gt_dir):
            if mask_folder.name not in by_stem and list_images(mask_folder):
                raise DataError(
                    f"Masks in '{mask_folder}' have no image: expected "
                    f"'{defect_dir / mask_folder.name}.png'."
                )
        for image in images:
            masks = tuple(list_images(gt_dir / image.stem))
            if not masks and require_masks:
                raise DataError(
                    f"Anomalous image '{image}' has no mask: expected one or more files "
                    f"in '{gt_dir / image.stem}' (000.png, 001.png, ...)."
                )
            samples.append(Sample(image, category, "test", 1, defect_dir.name, masks))
    for gt_dir in list_subdirs(cat_dir / "ground_truth"):
        if gt_dir.name not in known:
            raise DataError(
                f"Masks in '{gt_dir}' have no images: expected a folder '{test_dir / gt_dir.name}'."
            )
    return samples


def load_loco(
    root: str | Path, categories: Iterable[str] | None = None, *, require_masks: bool = True
) -> list[Sample]:
    """Read an MVTec LOCO AD tree."""
    root = require_dir(Path(root), "an MVTec LOCO AD root with one folder per category")
    chosen = select_categories(_category_names(root), categories, root, NAME)
    samples: list[Sample] = []
    for name in chosen:
        samples += _load_category(root / name, name, require_masks)
    return samples


load = load_loco
