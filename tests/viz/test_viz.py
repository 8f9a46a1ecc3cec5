"""Colormaps, overlays, contours, colour bars and grids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anomalign.viz import (
    add_colorbar,
    apply_colormap,
    draw_mask_contour,
    image_grid,
    overlay_heatmap,
    save_png,
)


def test_colormaps_endpoints_and_monotone_luminance() -> None:
    jet = apply_colormap(np.array([0.0, 0.5, 1.0]), "jet")
    assert tuple(jet[0]) == (0, 0, 128) and tuple(jet[2]) == (128, 0, 0)
    assert jet[1, 1] == 255  # green in the middle
    hot = apply_colormap(np.linspace(0, 1, 50), "hot").astype(float)
    luminance = hot @ np.array([0.299, 0.587, 0.114])
    assert np.all(np.diff(luminance) >= 0) and luminance[0] == 0 and luminance[-1] == 255
    with pytest.raises(ValueError, match="unknown colormap"):
        apply_colormap(np.zeros(2), "rainbow")


def test_overlay_uses_fixed_range_not_per_image_scaling() -> None:
    rgb = np.full((20, 30, 3), 100, np.uint8)
    low = overlay_heatmap(rgb, np.full((5, 5), 0.1), vmin=0.0, vmax=1.0, alpha=1.0)
    high = overlay_heatmap(rgb, np.full((5, 5), 0.9), vmin=0.0, vmax=1.0, alpha=1.0)
    assert low.shape == (20, 30, 3)
    assert low[..., 2].mean() > low[..., 0].mean()  # blue end
    assert high[..., 0].mean() > high[..., 2].mean()  # red end
    half = overlay_heatmap(rgb, np.zeros((5, 5)), alpha=0.0)
    np.testing.assert_array_equal(half, rgb)


def test_contour_is_the_mask_boundary() -> None:
    rgb = np.zeros((20, 20, 3), np.uint8)
    mask = np.zeros((20, 20), bool)
    mask[5:15, 5:15] = True
    out = draw_mask_contour(rgb, mask, color=(0, 255, 0))
    drawn = out[..., 1] == 255
    assert drawn[5, 5:15].all() and drawn[14, 5:15].all() and drawn[5:15, 5].all()
    assert not drawn[10, 10] and not drawn[0, 0]


def test_colorbar_grid_and_atomic_png(tmp_path: Path) -> None:
    rgb = np.zeros((40, 30, 3), np.uint8)
    with_bar = add_colorbar(rgb, 0.0, 0.5)
    assert with_bar.shape[0] == 40 and with_bar.shape[1] > 30
    grid = image_grid([rgb, np.zeros((20, 40, 3), np.uint8)], titles=["a", "b"], tile_height=40)
    assert grid.shape[0] == 40 + 14 and grid.shape[1] >= 30 + 80
    path = save_png(grid, tmp_path / "out" / "grid.png")
    assert Image.open(path).size == (grid.shape[1], grid.shape[0])
    assert [p.name for p in path.parent.iterdir()] == ["grid.png"]
    sixteen = save_png((np.arange(100, dtype=np.uint16) * 600).reshape(10, 10), tmp_path / "m.png")
    assert np.asarray(Image.open(sixteen)).max() == 99 * 600
