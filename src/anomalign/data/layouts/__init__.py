"""One reader per dataset layout, a registry of them and layout auto-detection.

Every reader is a pure function ``load_<layout>(root, categories=None, **options)``
returning a list of :class:`~anomalign.data.sample.Sample`; none writes to the dataset.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from anomalign.data.images import IMAGE_SUFFIXES
from anomalign.data.layouts import (
    btad,
    elpv,
    folder,
    loco,
    mpdd,
    mvtec,
    realiad,
    textile,
    visa,
)
from anomalign.data.layouts._common import require_dir
from anomalign.data.sample import Sample
from anomalign.errors import ConfigError, DataError


@dataclass(frozen=True)
class Layout:
    """A registered layout: its reader, category lister and detection predicate."""

    name: str
    description: str
    load: Callable[..., list[Sample]]
    categories: Callable[..., list[str]]
    detect: Callable[[Path], bool]


#: Registered layouts, in the order auto-detection tries them (most specific first).
LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        Layout(
            "realiad",
            "Real-IAD (JSON meta files)",
            realiad.load,
            realiad.categories,
            realiad.detect,
        ),
        Layout("visa", "VisA (split_csv/1cls.csv)", visa.load, visa.categories, visa.detect),
        Layout("elpv", "ELPV solar cells (labels.csv)", elpv.load, elpv.categories, elpv.detect),
        Layout(
            textile.NAME,
            "simulated textiles (conformal-clip-data: nominal/local/global)",
            textile.load,
            textile.categories,
            textile.detect,
        ),
        Layout("loco", "MVTec LOCO AD", loco.load, loco.categories, loco.detect),
        Layout("btad", "BTAD (ok/ko)", btad.load, btad.categories, btad.detect),
        Layout("mpdd", "MPDD", mpdd.load, mpdd.categories, mpdd.detect),
        Layout("mvtec", "MVTec AD", mvtec.load, mvtec.categories, mvtec.detect),
        Layout("folder", "generic folder", folder.load, folder.categories, folder.detect),
    )
}


def get_layout(name: str) -> Layout:
    """The registered layout called ``name``."""
    try:
        return LAYOUTS[name]
    except KeyError:
        raise ConfigError(
            f"Unknown dataset layout '{name}'; expected 'auto' or one of {', '.join(LAYOUTS)}."
        ) from None


def detect_layout(root: str | Path) -> str:
    """Name of the layout of the dataset at ``root``; raises if none matches."""
    root = require_dir(Path(root), "a dataset root folder")
    for layout in LAYOUTS.values():
        if layout.detect(root):
            return layout.name
    has_images = any(p.suffix.lower() in IMAGE_SUFFIXES for p in root.iterdir())
    hint = (
        " It holds images directly; put them in normal/abnormal sub-folders." if has_images else ""
    )
    raise DataError(
        f"Cannot recognise the dataset layout of '{root}'; expected one of: MVTec-style "
        "<category>/{train/good,test/<defect>,ground_truth}, VisA split_csv/1cls.csv, BTAD "
        "<product>/{train/ok,test/ko}, LOCO <category>/test/logical_anomalies, Real-IAD "
        "realiad_jsons/, ELPV labels.csv, or a folder with good/ and bad/ sub-folders (pass "
        f"--layout to choose explicitly).{hint}"
    )


__all__ = ["LAYOUTS", "Layout", "detect_layout", "get_layout"]
