"""Heatmap overlays, ground-truth contours, colour bars and side-by-side grids.

Maps are normalised with a *fixed* range (``vmin``/``vmax``, e.g. from a detector's
calibration), never per image: per-image min-max scaling makes every image look
anomalous.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from anomalign.data.transforms import resize_map, resize_mask, resize_rgb
from anomalign.io import atomic_path
from anomalign.viz.colormaps import apply_colormap


def overlay_heatmap(
    rgb: np.ndarray,
    anomaly_map: np.ndarray,
    vmin: float = 0.0,
    vmax: float = 1.0,
    alpha: float = 0.5,
    cmap: str = "jet",
) -> np.ndarray:
    """Blend a colour-mapped anomaly map over an ``(H, W, 3)`` uint8 image.

    The map is resized (bilinear) to the image; values are scaled by the fixed range
    ``[vmin, vmax]``.
    """
    if vmax <= vmin:
        raise ValueError(f"vmax ({vmax}) must be greater than vmin ({vmin})")
    amap = np.asarray(resize_map(np.asarray(anomaly_map, np.float32), rgb.shape[:2]))
    colours = apply_colormap((amap - vmin) / (vmax - vmin), cmap).astype(np.float32)
    blended = (1.0 - alpha) * rgb.astype(np.float32) + alpha * colours
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def draw_mask_contour(
    rgb: np.ndarray, mask: np.ndarray, color: tuple[int, int, int] = (0, 255, 0), width: int = 1
) -> np.ndarray:
    """Draw the boundary of a boolean ground-truth mask (resized to the image) in ``color``."""
    mask = resize_mask(np.asarray(mask, bool), rgb.shape[:2])
    inner = ndimage.binary_erosion(mask, iterations=max(1, width), border_value=0)
    out = rgb.copy()
    out[mask & ~inner] = color
    return out


def add_colorbar(
    rgb: np.ndarray, vmin: float, vmax: float, cmap: str = "jet", bar_width: int = 16
) -> np.ndarray:
    """Append a vertical colour bar with its range printed at both ends."""
    height = rgb.shape[0]
    ramp = np.linspace(1.0, 0.0, height)[:, None].repeat(bar_width, axis=1)
    bar = apply_colormap(ramp, cmap)
    label_width = 48
    panel = Image.new("RGB", (bar_width + label_width, height), (255, 255, 255))
    panel.paste(Image.fromarray(bar), (0, 0))
    draw = ImageDraw.Draw(panel)
    draw.text((bar_width + 3, 1), f"{vmax:.3g}", fill=(0, 0, 0))
    draw.text((bar_width + 3, max(0, height - 12)), f"{vmin:.3g}", fill=(0, 0, 0))
    return np.concatenate([rgb, np.asarray(panel)], axis=1)


def image_grid(
    images: Sequence[np.ndarray],
    titles: Sequence[str] | None = None,
    columns: int | None = None,
    tile_height: int = 256,
    gap: int = 4,
) -> np.ndarray:
    """Lay images out in rows of ``columns``, each scaled to ``tile_height``, with titles."""
    if not images:
        raise ValueError("no images to lay out")
    scaled = []
    for image in images:
        height, width = image.shape[:2]
        scaled.append(resize_rgb(image, (tile_height, max(1, round(width * tile_height / height)))))
    columns = columns or len(scaled)
    title_height = 14 if titles else 0
    cell_width = max(s.shape[1] for s in scaled)
    rows = -(-len(scaled) // columns)
    canvas = Image.new(
        "RGB",
        (columns * (cell_width + gap) - gap, rows * (tile_height + title_height + gap) - gap),
        (255, 255, 255),
    )
    draw = ImageDraw.Draw(canvas)
    for index, image in enumerate(scaled):
        row, col = divmod(index, columns)
        x, y = col * (cell_width + gap), row * (tile_height + title_height + gap)
        if titles:
            draw.text((x + 2, y + 1), str(titles[index]), fill=(0, 0, 0))
        canvas.paste(Image.fromarray(image), (x, y + title_height))
    return np.asarray(canvas)


def save_png(array: np.ndarray, path: str | Path) -> Path:
    """Write an image (uint8 RGB/L, or uint16 greyscale) to PNG atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")
    return path
