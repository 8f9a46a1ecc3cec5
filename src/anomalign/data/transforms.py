"""Geometric transforms that keep images, masks and anomaly maps aligned.

Images are squash-resized (no centre crop: a crop would misalign maps and masks on
non-square images) with PIL bicubic, as CLIP's own preprocessing does on PIL images;
masks are resized with nearest neighbour and stay binary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch

    from anomalign.data.sample import Sample


def _as_hw(size: int | tuple[int, int]) -> tuple[int, int]:
    """``size`` as ``(height, width)``; an int means a square."""
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


#: PIL resampling filters by name. torchvision's ``Resize`` defaults to bilinear (the
#: official AnoCLIP code), open_clip's transforms use bicubic.
INTERPOLATIONS: dict[str, Image.Resampling] = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
}


def resize_rgb(
    rgb: np.ndarray, size: int | tuple[int, int], interpolation: str = "bicubic"
) -> np.ndarray:
    """Squash-resize an ``(H, W, 3)`` uint8 image to ``size`` (int or ``(height, width)``)."""
    height, width = _as_hw(size)
    if rgb.shape[:2] == (height, width):
        return rgb
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {sorted(INTERPOLATIONS)}")
    resized = Image.fromarray(rgb).resize((width, height), INTERPOLATIONS[interpolation])
    return np.asarray(resized)


def resize_mask(mask: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize an ``(H, W)`` boolean mask with nearest neighbour; the result stays boolean."""
    height, width = _as_hw(size)
    if mask.shape == (height, width):
        return mask.astype(bool, copy=False)
    image = Image.fromarray(mask.astype(np.uint8) * 255)
    return np.asarray(image.resize((width, height), Image.Resampling.NEAREST)) > 127


def short_side_size(height: int, width: int, short: int) -> tuple[int, int]:
    """``(height, width)`` after resizing the short side to ``short``, keeping the aspect.

    Same rounding as torchvision's ``Resize(int)`` (the long side is truncated), which
    AnoCLIP's VisA pipeline uses: 1000x1500 (HxW) with ``short=240`` gives 240x360.
    """
    if height <= width:
        return short, int(short * width / height)
    return int(short * height / width), short


def resize_short_side(rgb: np.ndarray, short: int, interpolation: str = "bicubic") -> np.ndarray:
    """Resize an ``(H, W, 3)`` image so that its short side is ``short``."""
    return resize_rgb(rgb, short_side_size(rgb.shape[0], rgb.shape[1], short), interpolation)


def _bilinear_taps(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source rows, next rows and weights of a half-pixel linear resize ``src -> dst``:
    ``x = (i + 0.5) * (src / dst) - 0.5`` clamped at 0 (PyTorch's rule; the position is
    rounded once to float32, as PyTorch's fused multiply-add does)."""
    scale = np.float64(np.float32(src) / np.float32(dst))
    position = ((np.arange(dst, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    position = np.maximum(position, np.float32(0.0))
    low = np.minimum(position.astype(np.int64), src - 1)
    high = np.minimum(low + 1, src - 1)
    return low, high, (position - low.astype(np.float32)).astype(np.float32)


def _resize_map_numpy(amap: np.ndarray, height: int, width: int) -> np.ndarray:
    """``F.interpolate(mode="bilinear", align_corners=False)`` in numpy float32 (within
    2 float32 ulps of PyTorch's CPU kernel), so that resizing maps needs no torch."""
    rows, next_rows, wr = _bilinear_taps(amap.shape[-2], height)
    cols, next_cols, wc = _bilinear_taps(amap.shape[-1], width)
    one = np.float32(1.0)
    horizontal = amap[..., cols] * (one - wc) + amap[..., next_cols] * wc
    wr = wr[:, None]
    return horizontal[..., rows, :] * (one - wr) + horizontal[..., next_rows, :] * wr


def resize_map(amap: np.ndarray | torch.Tensor, size: int | tuple[int, int]) -> Any:
    """Bilinear resize of a float anomaly map ``(..., H, W)`` (numpy or torch) to ``size``.

    Used to bring maps back to an image's original size, or to the evaluation size.
    Numpy maps are resized in numpy (torch is not imported), torch tensors with
    ``F.interpolate``; both follow ``align_corners=False``.
    """
    height, width = _as_hw(size)
    if isinstance(amap, np.ndarray):
        if amap.shape[-2:] == (height, width):
            return amap
        return _resize_map_numpy(np.asarray(amap, dtype=np.float32), height, width)
    import torch.nn.functional as F

    if tuple(amap.shape[-2:]) == (height, width):
        return amap
    lead = amap.shape[:-2]
    flat = amap.reshape(-1, 1, *amap.shape[-2:])
    if not flat.is_floating_point():
        flat = flat.float()
    out = F.interpolate(flat, size=(height, width), mode="bilinear", align_corners=False)
    return out.reshape(*lead, height, width)


@dataclass(frozen=True)
class ImageMaskPair:
    """An image and its mask resized together, with the size they came from."""

    image: np.ndarray
    mask: np.ndarray
    original_size: tuple[int, int]


def resize_pair(rgb: np.ndarray, mask: np.ndarray, size: int | tuple[int, int]) -> ImageMaskPair:
    """Resize image (bicubic) and mask (nearest, binary) to one ``size``; keep the original."""
    if rgb.shape[:2] != mask.shape:
        raise ValueError(f"image {rgb.shape[:2]} and mask {mask.shape} sizes differ")
    return ImageMaskPair(resize_rgb(rgb, size), resize_mask(mask, size), rgb.shape[:2])


def load_pair(sample: Sample, size: int | tuple[int, int] | None = None) -> ImageMaskPair:
    """Decode a sample's image and mask and, if ``size`` is given, resize both to it."""
    rgb = sample.load_image()
    mask = sample.load_mask(size=rgb.shape[:2])
    if size is None:
        return ImageMaskPair(rgb, mask, rgb.shape[:2])
    return resize_pair(rgb, mask, size)


def _linear_taps(source: int, target: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """cv2 INTER_LINEAR taps along one axis: left index, right index and the two 11-bit
    fixed-point weights, rounded one by one as cv2 does (clamped at the borders)."""
    scale = 1.0 / (target / source)
    centre = ((np.arange(target) + 0.5) * scale - 0.5).astype(np.float32)
    left = np.floor(centre).astype(np.int64)
    frac = (centre - left).astype(np.float32)
    low = left < 0
    frac[low], left[low] = 0.0, 0
    high = left >= source - 1
    frac[high], left[high] = 0.0, source - 1
    right = np.minimum(left + 1, source - 1)
    w0 = np.rint((np.float32(1.0) - frac) * np.float32(2048)).astype(np.int64)
    w1 = np.rint(frac * np.float32(2048)).astype(np.int64)
    return left, right, np.stack([w0, w1])


def resize_linear_cv2(rgb: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Squash-resize ``(H, W, 3)`` uint8 as ``cv2.resize(img, (w, h))`` (INTER_LINEAR).

    The official FineGrainedAD/PromptAD loaders resize every image to 1024x1024 this way
    first. Uses OpenCV when it is installed; otherwise cv2's algorithm is reproduced:
    half-pixel centres, 11-bit weights per axis, an exact horizontal pass, and the
    vertical pass rounded as OpenCV's 8-bit SIMD kernel does
    (``((S0>>4)*b0>>16) + ((S1>>4)*b1>>16)``, then ``(x+2)>>2``); an exact 2x reduction is
    a 2x2 mean, as cv2 switches to INTER_AREA there.
    """
    height, width = _as_hw(size)
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if rgb.shape[:2] == (height, width):
        return rgb
    try:
        import cv2  # type: ignore[import-not-found]
    except ImportError:
        cv2 = None
    if cv2 is not None:
        return np.asarray(cv2.resize(rgb, (width, height)))
    src_h, src_w = rgb.shape[:2]
    if src_h == 2 * height and src_w == 2 * width:
        blocks = rgb.reshape(height, 2, width, 2, -1).astype(np.int64).sum(axis=(1, 3))
        return ((blocks + 2) >> 2).astype(np.uint8)
    x0, x1, wx = _linear_taps(src_w, width)
    y0, y1, wy = _linear_taps(src_h, height)
    data = rgb.astype(np.int64)
    rows = data[:, x0] * wx[0][None, :, None] + data[:, x1] * wx[1][None, :, None]
    top = (rows[y0] >> 4) * wy[0][:, None, None] >> 16
    bottom = (rows[y1] >> 4) * wy[1][:, None, None] >> 16
    return np.clip((top + bottom + 2) >> 2, 0, 255).astype(np.uint8)
