"""Geometric transforms that keep images, masks and anomaly maps aligned.

Images are squash-resized (no centre crop: a crop would misalign maps and masks on
non-square images) with PIL bicubic, as CLIP's own preprocessing does on PIL images;
masks are resized with nearest neighbour and stay binary.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def _as_hw(size: int | tuple[int, int]) -> tuple[int, int]:
    """``size`` as ``(height, width)``; an int means a square."""
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


def resize_rgb(rgb: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Squash-resize an ``(H, W, 3)`` uint8 image to ``size`` (int or ``(height, width)``)."""
    height, width = _as_hw(size)
    if rgb.shape[:2] == (height, width):
        return rgb
    resized = Image.fromarray(rgb).resize((width, height), Image.Resampling.BICUBIC)
    return np.asarray(resized)


def resize_mask(mask: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize an ``(H, W)`` boolean mask with nearest neighbour; the result stays boolean."""
    height, width = _as_hw(size)
    if mask.shape == (height, width):
        return mask.astype(bool, copy=False)
    image = Image.fromarray(mask.astype(np.uint8) * 255)
    return np.asarray(image.resize((width, height), Image.Resampling.NEAREST)) > 127
