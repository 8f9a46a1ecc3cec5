"""Simulated textile images, as shipped by the ``conformal-clip-data`` package (extra
``demo``): 2,000 greyscale woven-textile images of Megahed et al. 2025 (arXiv 2501.12596)
in ``textile_images/simulated/{nominal,local,global}/``: 1,000 nominal, 500 with a local
defect and 500 with a global one. Image labels only (no masks).

One category, ``textile``; defect types ``local`` and ``global``. As for ELPV there is no
split: a seeded fraction of the nominal images (``normal_train_fraction``) forms the
training split, every other image is test. A folder with the same three sub-folders
works too (``--root``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from pathlib import Path

from anomalign.data.fewshot import stable_order
from anomalign.data.layouts._common import list_images, require_dir, select_categories
from anomalign.data.sample import NORMAL_DEFECT_TYPE, Sample
from anomalign.errors import ConfigError, DataError

NAME = "conformal-textile"
CATEGORY = "textile"
NORMAL_DIR = "nominal"
DEFECT_DIRS: tuple[str, ...] = ("local", "global")
PACKAGE = "conformal_clip_data"
SUBDIR = Path("data") / "textile_images" / "simulated"


def package_root() -> Path:
    """The simulated-textile folder of the installed ``conformal-clip-data`` package."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "The textile data comes from the 'conformal-clip-data' package, which is not "
            "installed; install it with `pip install anomalign[demo]` (or pass a folder "
            "holding nominal/, local/ and global/)."
        )
    return Path(next(iter(spec.submodule_search_locations))) / SUBDIR


def detect(root: Path) -> bool:
    """True when ``root`` holds ``nominal/``, ``local/`` and ``global/`` image folders."""
    return all((root / d).is_dir() for d in (NORMAL_DIR, *DEFECT_DIRS))


def categories(root: str | Path | None = None) -> list[str]:
    return [CATEGORY]


def load_textile(
    root: str | Path | None = None,
    categories: Iterable[str] | None = None,
    *,
    normal_train_fraction: float = 0.2,
    seed: int = 0,
) -> list[Sample]:
    """Read the textile set (from the installed package when ``root`` is None)."""
    if not 0.0 <= normal_train_fraction < 1.0:
        raise ConfigError(f"normal_train_fraction must be in [0, 1), got {normal_train_fraction}.")
    base = require_dir(Path(root), "a textile folder") if root is not None else package_root()
    select_categories([CATEGORY], categories, base, NAME)
    normals = list_images(base / NORMAL_DIR)
    if not normals:
        raise DataError(f"'{base / NORMAL_DIR}' holds no images; expected the nominal images.")
    keys = [p.name for p in normals]
    train = set(stable_order(keys, seed)[: round(normal_train_fraction * len(normals))])
    samples = [
        Sample(p, CATEGORY, "train" if i in train else "test", 0, NORMAL_DEFECT_TYPE)
        for i, p in enumerate(normals)
    ]
    for defect in DEFECT_DIRS:
        samples += [Sample(p, CATEGORY, "test", 1, defect) for p in list_images(base / defect)]
    return samples


load = load_textile
