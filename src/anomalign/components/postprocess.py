"""Anomaly-map post-processing shared by the methods: smoothing and resizing."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter


def mean_filter(grid_maps: torch.Tensor, size: int = 3) -> torch.Tensor:
    """Replicate-padded ``size x size`` mean filter on ``(B, 1, h, w)`` patch-grid maps."""
    pad = size // 2
    padded = F.pad(grid_maps, (pad, pad, pad, pad), mode="replicate")
    return F.avg_pool2d(padded, size, stride=1)


def upsample(maps: torch.Tensor, size: tuple[int, int], align_corners: bool) -> torch.Tensor:
    """Bilinear resize of ``(B, 1, h, w)`` maps to ``size`` (no-op when already that size)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=align_corners)


def gaussian_smooth(maps: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian filter per map of ``(B, H, W)`` as scipy's ``gaussian_filter`` (reflect mode)."""
    if sigma <= 0:
        return maps
    return np.stack([gaussian_filter(m, sigma=sigma) for m in maps]).astype(np.float32)
