"""Colormaps as 256-entry lookup tables, computed (no plotting library needed).

* ``jet``: the classic rainbow map of the anomaly-detection literature (OpenCV's layout).
* ``hot``: black -> red -> yellow -> white; luminance rises monotonically, so it reads
  correctly in greyscale and for colour-blind viewers (the perceptual choice).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def _jet(x: np.ndarray) -> np.ndarray:
    r = np.clip(1.5 - np.abs(4 * x - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * x - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * x - 1), 0, 1)
    return np.stack([r, g, b], axis=-1)


def _hot(x: np.ndarray) -> np.ndarray:
    r = np.clip(3 * x, 0, 1)
    g = np.clip(3 * x - 1, 0, 1)
    b = np.clip(3 * x - 2, 0, 1)
    return np.stack([r, g, b], axis=-1)


_FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"jet": _jet, "hot": _hot}
COLORMAPS: dict[str, np.ndarray] = {
    name: np.rint(fn(np.linspace(0.0, 1.0, 256)) * 255).astype(np.uint8)
    for name, fn in _FUNCTIONS.items()
}


def apply_colormap(values: np.ndarray, name: str = "jet") -> np.ndarray:
    """Map values in [0, 1] (clipped) of any shape to uint8 RGB (``shape + (3,)``)."""
    if name not in COLORMAPS:
        raise ValueError(f"unknown colormap '{name}'; known: {sorted(COLORMAPS)}")
    index = np.rint(np.clip(np.nan_to_num(values, nan=0.0), 0.0, 1.0) * 255).astype(np.intp)
    return COLORMAPS[name][index]
