"""Decode any image a user may hand us into 8-bit RGB (or a binary mask).

Accepted inputs: a path (str or ``Path``), a ``PIL.Image`` in any mode (1, L, LA, P,
RGB, RGBA, CMYK, I;16, I, F, ...) or a numpy array (HxW, HxWx1/3/4; uint8, uint16,
bool or float in [0, 1]). Alpha channels are dropped, as CLIP's own pipeline does.
Every failure raises :class:`ImageReadError` naming the file and what was expected.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeAlias

import numpy as np
from PIL import Image, UnidentifiedImageError

from anomalign.errors import DataError

ImageInput: TypeAlias = "str | Path | Image.Image | np.ndarray"

#: File suffixes (case-insensitive) read as images when a folder is listed: by dataset
#: layouts and by every command that takes folders. Files named explicitly are always read.
IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".pnm"}
)


class ImageReadError(DataError):
    """An image could not be read or has an unsupported shape, type or size."""


def _describe(source: object) -> str:
    if isinstance(source, str | Path):
        return f"'{source}'"
    if isinstance(source, np.ndarray):
        return f"numpy array of shape {source.shape} and dtype {source.dtype}"
    if isinstance(source, Image.Image):
        return f"PIL image (mode {source.mode}, size {source.size})"
    return f"object of type {type(source).__name__}"


def _open_path(path: Path) -> Image.Image:
    if not path.is_file():
        raise ImageReadError(f"Image file '{path}' does not exist or is not a file.")
    if path.stat().st_size == 0:
        raise ImageReadError(f"Image file '{path}' is empty (0 bytes).")
    try:
        with Image.open(path) as handle:
            handle.load()  # force decoding now: truncated files fail here, not later
            return handle.copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ImageReadError(
            f"Cannot decode image file '{path}': {error}. Expected a readable image "
            "(PNG, JPEG, BMP, TIFF, ...)."
        ) from error


def _high_depth_to_uint8(array: np.ndarray, source: object) -> np.ndarray:
    """Map 16/32-bit integer or float pixel data to uint8 (floats must lie in [0, 1])."""
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if array.dtype == np.uint8:
        return array
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            raise ImageReadError(f"Image {_describe(source)} contains nan or inf values.")
        low, high = float(array.min(initial=0.0)), float(array.max(initial=0.0))
        if low < -1e-6 or high > 1.0 + 1e-6:
            raise ImageReadError(
                f"Float image {_describe(source)} has values in [{low:.3g}, {high:.3g}]; "
                "expected floats in [0, 1] (or pass uint8/uint16 data)."
            )
        return np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        if array.min(initial=0) < 0:
            raise ImageReadError(f"Integer image {_describe(source)} has negative values.")
        peak = 255 if array.max(initial=0) <= 255 and array.dtype.itemsize == 1 else 65535
        if array.max(initial=0) > 65535:
            peak = int(array.max())
        return np.clip(np.rint(array.astype(np.float64) * (255.0 / peak)), 0, 255).astype(np.uint8)
    raise ImageReadError(f"Unsupported pixel type in {_describe(source)}.")


def _array_to_rgb(array: np.ndarray, source: object) -> np.ndarray:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageReadError(
            f"Image {_describe(source)} has an unsupported shape; expected HxW, HxWx1, "
            "HxWx3 or HxWx4."
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageReadError(f"Image {_describe(source)} has zero size.")
    array = _high_depth_to_uint8(np.asarray(array), source)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    return np.ascontiguousarray(array[..., :3])


def _pil_to_rgb(image: Image.Image, source: object) -> np.ndarray:
    if image.width == 0 or image.height == 0:
        raise ImageReadError(f"Image {_describe(source)} has zero size.")
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _array_to_rgb(np.asarray(image), source)
    if image.mode != "RGB":
        image = image.convert("RGBA" if image.mode in ("P", "PA") else image.mode)
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8).copy()


def load_rgb(source: ImageInput) -> np.ndarray:
    """Decode ``source`` into an ``(H, W, 3)`` uint8 RGB array."""
    if isinstance(source, str | Path):
        return _pil_to_rgb(_open_path(Path(source)), source)
    if isinstance(source, Image.Image):
        return _pil_to_rgb(source, source)
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source, source)
    raise ImageReadError(
        f"Cannot read {_describe(source)}: expected a path, a PIL image or a numpy array."
    )


def load_mask(source: ImageInput) -> np.ndarray:
    """Decode a ground-truth mask into an ``(H, W)`` bool array (any non-zero pixel is True)."""
    if isinstance(source, str | Path):
        image = _open_path(Path(source))
        array = np.asarray(image.convert("L") if image.mode in ("P", "RGB", "RGBA") else image)
    elif isinstance(source, Image.Image):
        array = np.asarray(source)
    elif isinstance(source, np.ndarray):
        array = source
    else:
        raise ImageReadError(f"Cannot read mask from {_describe(source)}.")
    if array.ndim == 3:
        array = array.max(axis=2)
    if array.ndim != 2 or array.size == 0:
        raise ImageReadError(f"Mask {_describe(source)} must be a non-empty HxW image.")
    return array != 0
