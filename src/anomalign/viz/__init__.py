"""Visualisation with Pillow and numpy: colormaps, overlays, contours, colour bars, grids."""

from anomalign.viz.colormaps import COLORMAPS, apply_colormap
from anomalign.viz.overlay import (
    add_colorbar,
    draw_mask_contour,
    image_grid,
    overlay_heatmap,
    save_png,
)

__all__ = [
    "COLORMAPS",
    "add_colorbar",
    "apply_colormap",
    "draw_mask_contour",
    "image_grid",
    "overlay_heatmap",
    "save_png",
]
