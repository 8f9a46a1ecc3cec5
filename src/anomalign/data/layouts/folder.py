"""A user's own folder, one category, in one of two shapes.

1. Normal / abnormal folders: ``<root>/<normal_dir>/``, ``<root>/<abnormal_dir>/`` (images
   directly inside, or in one sub-folder per defect type) and an optional
   ``<root>/<mask_dir>/`` whose masks are matched to abnormal images by file stem
   (``x.png`` or ``x_mask.png`` for image ``x.jpg``). Default folder names are tried from
   :data:`NORMAL_DIRS`, :data:`ABNORMAL_DIRS` and :data:`MASK_DIRS`. Normal images go to the
   training split when ``normal_test_dir`` is given; otherwise a fixed, seeded fraction of
   them (``normal_train_fraction``) becomes the training split and the rest is tested.
2. MVTec-like: ``<root>/train/good``, ``<root>/test/{good,<defect>}``,
   ``<root>/ground_truth/<defect>``; masks are required for a defect type whose mask
   folder exists.

The category is the root folder's name unless ``category`` is given.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from anomalign.data.fewshot import stable_order
from anomalign.data.images import IMAGE_SUFFIXES
from anomalign.data.layouts._common import (
    is_image_file,
    list_images,
    load_tree_category,
    mask_key,
    normal_samples,
    require_dir,
    select_categories,
)
from anomalign.data.sample import Sample
from anomalign.errors import DataError

NAME = "folder"
NORMAL_DIRS: tuple[str, ...] = ("good", "normal", "ok")
ABNORMAL_DIRS: tuple[str, ...] = ("bad", "abnormal", "anomaly", "anomalous", "defect", "ng", "ko")
MASK_DIRS: tuple[str, ...] = ("masks", "mask", "ground_truth", "gt")


def _find(root: Path, names: Iterable[str]) -> Path | None:
    return next((root / n for n in names if (root / n).is_dir()), None)


def _is_tree(root: Path) -> bool:
    return (root / "test").is_dir()


def detect(root: Path) -> bool:
    """A single-category MVTec-like tree, or a normal folder next to an abnormal folder."""
    return _is_tree(root) or (
        _find(root, NORMAL_DIRS) is not None and _find(root, ABNORMAL_DIRS) is not None
    )


def categories(root: str | Path, category: str | None = None) -> list[str]:
    """The one category of a folder dataset (the root's name by default)."""
    root = require_dir(Path(root), "a folder of images")
    return [category or root.resolve().name]


def _images_below(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if is_image_file(p))


def _abnormal_samples(abnormal: Path, masks: Path | None, category: str) -> list[Sample]:
    images = _images_below(abnormal)
    by_key: dict[str, list[Path]] = {}
    for mask in _images_below(masks) if masks is not None else []:
        by_key.setdefault(mask_key(mask), []).append(mask)
    used: set[Path] = set()
    samples = []
    for image in images:
        relative = image.parent.relative_to(abnormal)
        defect = relative.parts[0] if relative.parts else abnormal.name
        found: tuple[Path, ...] = ()
        if masks is not None:
            options = by_key.get(image.stem, [])
            if len(options) > 1:  # same stem in several sub-folders: mirror the image's folder
                options = [m for m in options if m.parent.relative_to(masks) == relative]
            if len(options) != 1:
                state = "has no mask" if not options else "matches several masks"
                raise DataError(
                    f"Anomalous image '{image}' {state}: expected exactly one file named "
                    f"'{image.stem}' or '{image.stem}_mask' ({'/'.join(sorted(IMAGE_SUFFIXES))})"
                    f" in '{masks / relative}'."
                )
            found = (options[0],)
            used.add(options[0])
        samples.append(Sample(image, category, "test", 1, defect, found))
    if masks is not None:
        for key_masks in by_key.values():
            for mask in key_masks:
                if mask not in used:
                    raise DataError(
                        f"Mask '{mask}' has no image: expected an image with stem "
                        f"'{mask_key(mask)}' under '{abnormal}'."
                    )
    return samples


def load_folder(
    root: str | Path,
    categories: Iterable[str] | None = None,
    *,
    category: str | None = None,
    normal_dir: str | Path | None = None,
    abnormal_dir: str | Path | None = None,
    mask_dir: str | Path | None = None,
    normal_test_dir: str | Path | None = None,
    normal_train_fraction: float = 0.2,
    seed: int = 0,
) -> list[Sample]:
    """Read a folder dataset (see the module docstring for the two accepted shapes)."""
    root = require_dir(Path(root), "a folder of images")
    name = category or root.resolve().name
    select_categories([name], categories, root, NAME)
    if _is_tree(root) and normal_dir is None and abnormal_dir is None:
        return load_tree_category(root, name, require_masks=None, layout=NAME)
    normal = root / normal_dir if normal_dir is not None else _find(root, NORMAL_DIRS)
    abnormal = root / abnormal_dir if abnormal_dir is not None else _find(root, ABNORMAL_DIRS)
    if normal is None or abnormal is None:
        raise DataError(
            f"'{root}' is not a folder dataset: expected a normal folder (one of "
            f"{', '.join(NORMAL_DIRS)}) and an abnormal folder (one of {', '.join(ABNORMAL_DIRS)})"
            ", or train/ and test/ folders like MVTec AD."
        )
    require_dir(normal, "the folder of normal images")
    require_dir(abnormal, "the folder of anomalous images")
    masks = root / mask_dir if mask_dir is not None else _find(root, MASK_DIRS)
    if masks is not None:
        require_dir(masks, "the folder of masks")
    normals = list_images(normal) or _images_below(normal)
    if normal_test_dir is not None:
        test_normals = _images_below(require_dir(root / normal_test_dir, "normal test images"))
        samples = normal_samples(normals, name, "train") + normal_samples(
            test_normals, name, "test"
        )
    else:
        if not 0.0 <= normal_train_fraction < 1.0:
            raise DataError(
                f"normal_train_fraction must be in [0, 1), got {normal_train_fraction}."
            )
        keys = [p.relative_to(normal).as_posix() for p in normals]
        n_train = round(normal_train_fraction * len(normals))
        train = set(stable_order(keys, seed)[:n_train])
        samples = normal_samples([p for i, p in enumerate(normals) if i in train], name, "train")
        samples += normal_samples(
            [p for i, p in enumerate(normals) if i not in train], name, "test"
        )
    return samples + _abnormal_samples(abnormal, masks, name)


load = load_folder
