"""Per-image overlay panels: heatmap on the image, ground-truth contour, colour bar, caption.

Pillow and numpy only (through :mod:`anomalign.viz`). The heatmap range is the bundle's
calibration, never the image's own min and max.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from anomalign.calibration import Calibration
from anomalign.data.transforms import resize_mask, resize_rgb
from anomalign.viz.overlay import add_colorbar, draw_mask_contour, overlay_heatmap

UNTRAINED_MARK = "UNTRAINED BACKBONE: random weights, not a real result"
CAPTION_HEIGHT = 14
MAX_SIDE = 1024
MIN_SIDE = 256


def fit_size(
    height: int, width: int, max_side: int = MAX_SIDE, min_side: int = 0
) -> tuple[int, int]:
    """``(height, width)`` scaled (aspect kept) so the long side is at most ``max_side``
    and, when ``min_side`` is given, at least ``min_side``."""
    long_side = max(height, width)
    scale = 1.0
    if long_side > max_side:
        scale = max_side / long_side
    elif min_side and long_side < min_side:
        scale = min_side / long_side
    return max(1, round(height * scale)), max(1, round(width * scale))


def caption_band(width: int, lines: list[tuple[str, tuple[int, int, int]]]) -> np.ndarray:
    """A white band with one coloured line of text per entry."""
    band = Image.new("RGB", (max(1, width), CAPTION_HEIGHT * len(lines)), (255, 255, 255))
    draw = ImageDraw.Draw(band)
    for index, (text, colour) in enumerate(lines):
        draw.text((2, index * CAPTION_HEIGHT + 1), text, fill=colour)
    return np.asarray(band)


def render_overlay(
    rgb: np.ndarray,
    amap: np.ndarray,
    calibration: Calibration,
    cmap: str = "jet",
    alpha: float = 0.5,
    colorbar: bool = True,
    mask: np.ndarray | None = None,
    caption: str | None = None,
    untrained: bool = False,
    max_side: int = MAX_SIDE,
    min_side: int = MIN_SIDE,
) -> np.ndarray:
    """The overlay panel of one image as ``(H, W, 3)`` uint8.

    The image is scaled to fit ``[min_side, max_side]`` on its long side (so a 1x1 image
    is still visible and a 4000x3000 one stays small), the map is drawn with the fixed
    calibrated range, the ground-truth ``mask`` (if any) as a green contour, then a colour
    bar in map units and a caption band; untrained backbones get a red warning line.
    """
    height, width = fit_size(rgb.shape[0], rgb.shape[1], max_side, min_side)
    if (height, width) != rgb.shape[:2] and max(rgb.shape[:2]) < min_side:
        image = np.asarray(Image.fromarray(rgb).resize((width, height), Image.Resampling.NEAREST))
    else:
        image = resize_rgb(rgb, (height, width))
    panel = overlay_heatmap(
        image, amap, calibration.map_low, calibration.map_high, alpha=alpha, cmap=cmap
    )
    if mask is not None:
        panel = draw_mask_contour(panel, resize_mask(np.asarray(mask, bool), (height, width)))
    if colorbar:
        panel = add_colorbar(panel, calibration.map_low, calibration.map_high, cmap=cmap)
    lines: list[tuple[str, tuple[int, int, int]]] = []
    if caption:
        lines.append((caption, (0, 0, 0)))
    if untrained:
        lines.append((UNTRAINED_MARK, (200, 0, 0)))
    if lines:
        panel = np.concatenate([caption_band(panel.shape[1], lines), panel], axis=0)
    return panel
