"""Overlay figures for the report: heatmap on the image with the ground-truth contour.

One PNG per (method, shots, category): a row per example (the image with its contour, then
the heatmap overlay with the same contour) and a colour bar. Every map of a figure uses the
same value range, the min/max over all of that category's maps, never per-image scaling.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from anomalign.data.sample import Sample
from anomalign.data.transforms import resize_mask, resize_rgb
from anomalign.viz import add_colorbar, draw_mask_contour, image_grid, overlay_heatmap, save_png


def choose_examples(samples: Sequence[Sample], count: int) -> list[int]:
    """Indices of up to ``count`` examples: anomalous images spread evenly, plus one normal."""
    if count <= 0:
        return []
    anomalous = [i for i, s in enumerate(samples) if s.label == 1]
    normal = [i for i, s in enumerate(samples) if s.label == 0]
    n_normal = 1 if normal and (count > 1 or not anomalous) else 0
    n_anomalous = min(len(anomalous), count - n_normal)
    picked = [anomalous[round(j * len(anomalous) / n_anomalous)] for j in range(n_anomalous)]
    return sorted(picked + normal[:n_normal])


def write_overlay_figure(
    path: str | Path,
    samples: Sequence[Sample],
    maps: Sequence[np.ndarray],
    vmin: float,
    vmax: float,
    title_prefix: str = "",
) -> Path:
    """Write the figure for ``samples`` and their ``maps`` with the fixed range [vmin, vmax]."""
    if vmax <= vmin:
        vmax = vmin + 1e-6
    panels, titles = [], []
    tile = max(128, min(256, max(m.shape[0] for m in maps)))
    for sample, amap in zip(samples, maps, strict=True):
        rgb = resize_rgb(sample.load_image(), amap.shape)
        mask = resize_mask(sample.load_mask(size=None), amap.shape)
        panels.append(draw_mask_contour(rgb, mask))
        panels.append(draw_mask_contour(overlay_heatmap(rgb, amap, vmin, vmax), mask))
        name = f"{title_prefix}{sample.defect_type}/{sample.image_path.name}"
        titles.extend([name, "anomaly map"])
    grid = image_grid(panels, titles, columns=2, tile_height=tile)
    return save_png(add_colorbar(grid, vmin, vmax), path)
