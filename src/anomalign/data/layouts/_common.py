"""Helpers shared by the layout readers: listing images, pairing masks, checking folders."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from anomalign.data.images import IMAGE_SUFFIXES
from anomalign.data.sample import NORMAL_DEFECT_TYPE, Sample, Split
from anomalign.errors import DataError

MASK_SUFFIXES: tuple[str, ...] = ("_mask", "_gt", "-mask")


def require_dir(path: Path, expected: str) -> Path:
    """Return ``path`` if it is a folder, else raise a :class:`DataError` naming it."""
    if not path.is_dir():
        state = "is not a folder" if path.exists() else "does not exist"
        raise DataError(f"'{path}' {state}; expected {expected}.")
    return path


def is_image_file(path: Path) -> bool:
    """A visible regular file with a known image extension (any case)."""
    return (
        not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
    )


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name; empty if it is missing."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if is_image_file(p))


def list_subdirs(folder: Path) -> list[Path]:
    """Visible sub-folders of ``folder``, sorted by name."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def mask_key(path: Path) -> str:
    """The image stem a mask file belongs to: ``000_mask.png`` -> ``000``."""
    stem = path.stem
    for suffix in MASK_SUFFIXES:
        if stem.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def index_by_stem(images: Iterable[Path]) -> dict[str, Path]:
    """Map stem -> image, refusing two images with one stem (their masks would be ambiguous)."""
    index: dict[str, Path] = {}
    for image in images:
        if image.stem in index:
            raise DataError(
                f"Images '{index[image.stem]}' and '{image}' share the stem '{image.stem}'; "
                "expected one image per stem so that masks can be paired by file name."
            )
        index[image.stem] = image
    return index


def pair_masks(images: Sequence[Path], mask_dir: Path, *, require: bool = True) -> dict[Path, Path]:
    """Pair each image with ``mask_dir/<stem>[_mask].<ext>`` by file stem.

    Raises :class:`DataError` for a mask without an image and, when ``require`` is set,
    for an image without a mask. Returns ``image -> mask`` for the images that have one.
    """
    by_stem = index_by_stem(images)
    pairs: dict[Path, Path] = {}
    for mask in list_images(mask_dir):
        key = mask_key(mask) if mask_key(mask) in by_stem else mask.stem
        image = by_stem.get(key)
        if image is None:
            raise DataError(
                f"Mask '{mask}' has no image: expected an image with stem '{mask_key(mask)}' "
                f"next to the other images (e.g. in '{images[0].parent if images else '?'}')."
            )
        if image in pairs:
            raise DataError(
                f"Image '{image}' has two masks, '{pairs[image]}' and '{mask}'; expected one."
            )
        pairs[image] = mask
    if require:
        for image in images:
            if image not in pairs:
                raise DataError(
                    f"Anomalous image '{image}' has no mask: expected "
                    f"'{mask_dir / (image.stem + '_mask.png')}' (or the same stem with any "
                    "image extension)."
                )
    return pairs


def select_categories(
    available: Sequence[str], requested: Iterable[str] | None, root: Path, layout: str
) -> list[str]:
    """``requested`` checked against what is on disk (all of ``available`` if None)."""
    if not available:
        raise DataError(f"No categories found under '{root}' for the {layout} layout.")
    if requested is None:
        return list(available)
    chosen = [requested] if isinstance(requested, str) else list(requested)
    for name in chosen:
        if name not in available:
            raise DataError(
                f"Unknown category '{name}' under '{root}' ({layout} layout); expected one of: "
                f"{', '.join(available)}."
            )
    return chosen


def normal_samples(images: Iterable[Path], category: str, split: Split) -> list[Sample]:
    """Label-0 samples for a list of normal images."""
    return [Sample(p, category, split, 0, NORMAL_DEFECT_TYPE) for p in images]


def load_tree_category(
    cat_dir: Path,
    category: str,
    *,
    normal_name: str = "good",
    mask_dir_name: str = "ground_truth",
    require_masks: bool | None = True,
    layout: str = "mvtec",
) -> list[Sample]:
    """Read one category of an MVTec-style tree.

    ``train/<normal>/``, ``test/<normal>/`` and ``test/<defect>/`` hold images;
    ``<mask_dir_name>/<defect>/<stem>[_mask].<ext>`` holds the masks, paired by stem.
    ``test/`` is required; ``train/`` may be missing (zero-shot use). With
    ``require_masks=None`` masks are required only for defect types whose mask folder exists.
    """
    require_dir(cat_dir, f"a category folder of the {layout} layout")
    test_dir = require_dir(
        cat_dir / "test", f"'test/{normal_name}' and 'test/<defect>' folders ({layout} layout)"
    )
    samples = normal_samples(list_images(cat_dir / "train" / normal_name), category, "train")
    defect_dirs = list_subdirs(test_dir)
    for defect_dir in defect_dirs:
        images = list_images(defect_dir)
        if defect_dir.name == normal_name:
            samples += normal_samples(images, category, "test")
            continue
        mask_dir = cat_dir / mask_dir_name / defect_dir.name
        require = mask_dir.is_dir() if require_masks is None else require_masks
        pairs = pair_masks(images, mask_dir, require=require)
        samples += [
            Sample(p, category, "test", 1, defect_dir.name, (pairs[p],) if p in pairs else ())
            for p in images
        ]
    gt_root = cat_dir / mask_dir_name
    known = {d.name for d in defect_dirs if d.name != normal_name}
    for gt_dir in list_subdirs(gt_root):
        if gt_dir.name not in known and list_images(gt_dir):
            raise DataError(
                f"Masks in '{gt_dir}' have no images: expected a folder "
                f"'{test_dir / gt_dir.name}' with the anomalous images they belong to."
            )
    return samples
