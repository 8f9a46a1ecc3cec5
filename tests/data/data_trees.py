"""Builders of tiny dataset trees in ``tmp_path`` (nothing from real datasets is committed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_image(
    path: Path, size: tuple[int, int] = (8, 8), value: int = 128, fmt: str | None = None
) -> Path:
    """Write a small grey RGB image of ``(height, width)`` ``size``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), value, dtype=np.uint8)).save(path, format=fmt)
    return path


def write_mask(
    path: Path,
    size: tuple[int, int] = (8, 8),
    box: tuple[int, int, int, int] = (0, 0, 2, 2),
    value: int = 255,
) -> Path:
    """Write an ``L`` mask with ``value`` inside ``box`` = (top, left, bottom, right)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.zeros(size, dtype=np.uint8)
    top, left, bottom, right = box
    array[top:bottom, left:right] = value
    Image.fromarray(array).save(path)
    return path


def make_mvtec(root: Path, categories: tuple[str, ...] = ("bottle", "wood")) -> Path:
    """Two categories: 3 train, 2 test good, 2 + 1 defective with masks."""
    for cat in categories:
        for i in range(3):
            write_image(root / cat / "train" / "good" / f"{i:03d}.png")
        for i in range(2):
            write_image(root / cat / "test" / "good" / f"{i:03d}.png")
        for defect, n in (("broken", 2), ("crack", 1)):
            for i in range(n):
                write_image(root / cat / "test" / defect / f"{i:03d}.png", value=10)
                write_mask(root / cat / "ground_truth" / defect / f"{i:03d}_mask.png")
    return root


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` with its size and mtime, to prove nothing was written."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
    }
