"""Decode any image a user may hand us into 8-bit RGB (or a binary mask).

Accepted inputs: a path (str or ``Path``), a ``PIL.Image`` in any mode (1, L, LA, P,
RGB, RGBA, CMYK, I;16, I, F, ...) or a numpy array (HxW, HxWx1/3/4; uint8, uint16,
bool or float in [0, 1]). Alpha channels are dropped, as CLIP's own pipeline does.
Every failure raises :class:`ImageReadError` naming the file and what was expected.
"""

from __future__ import annotations

import io
import os
from contextlib import suppress
from pathlib import Path
from typing import BinaryIO, TypeAlias

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from anomalign.errors import DataError

ImageInput: TypeAlias = "str | Path | Image.Image | np.ndarray"

#: File suffixes (case-insensitive) read as images when a folder is listed: by dataset
#: layouts and by every command that takes folders. Files named explicitly are always read.
IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".pnm"}
)


_ORIENTATION = 0x0112  # the EXIF orientation tag
#: Files whose long side is at least twice this are shrunk by an integer factor while
#: decoding for a method (the long side stays >= this), so a 10000² photo costs tens of
#: MB, not gigabytes; smaller files (every benchmark dataset) decode at full size.
METHOD_DECODE_SIDE = 2048


class ImageReadError(DataError):
    """An image could not be read or has an unsupported shape, type or size."""


def path_text(path: str | Path) -> str:
    """``path`` as printable UTF-8 text: bytes that are not UTF-8 (surrogate-escaped by
    the OS layer) are written as ``\\xNN``, so a name can go into JSON, CSV and file
    names without raising ``UnicodeEncodeError``."""
    return os.fsencode(os.fspath(path)).decode("utf-8", errors="backslashreplace")


def _describe(source: object) -> str:
    if isinstance(source, str | Path):
        return f"'{path_text(source)}'"
    if isinstance(source, np.ndarray):
        return f"numpy array of shape {source.shape} and dtype {source.dtype}"
    if isinstance(source, Image.Image):
        return f"PIL image (mode {source.mode}, size {source.size})"
    return f"object of type {type(source).__name__}"


def _reduce_factor(size: tuple[int, int], max_side: int | None) -> int:
    """The largest integer factor that keeps the long side at least ``max_side``."""
    if max_side is None or max(size) <= max_side:
        return 1
    return max(1, max(size) // max_side)


def _open_path(path: Path, max_side: int | None = None) -> Image.Image:
    """:func:`_decode` without the original size."""
    return _decode(path, max_side)[0]


def _decode(path: Path, max_side: int | None = None) -> tuple[Image.Image, tuple[int, int]]:
    """Decode ``path`` in its displayed orientation (EXIF applied), with its displayed
    ``(height, width)`` at full size. With ``max_side``, large images are shrunk while
    decoding (JPEG draft mode, then an integer reduce) so that the long side stays at
    least ``max_side`` but memory stays bounded."""
    name = path_text(path)
    if not path.is_file():
        if path.is_symlink():
            raise ImageReadError(
                f"Image file '{name}' is a broken symbolic link (its target is missing or "
                "it points at itself)."
            )
        raise ImageReadError(f"Image file '{name}' does not exist or is not a file.")
    if path.stat().st_size == 0:
        raise ImageReadError(f"Image file '{name}' is empty (0 bytes).")
    return _decode_file(path, name, max_side)


def _decode_file(
    source: Path | BinaryIO, name: str, max_side: int | None
) -> tuple[Image.Image, tuple[int, int]]:
    """:func:`_decode` of an opened or named file; ``name`` names it in errors."""
    try:
        with Image.open(source) as handle:
            width, height = handle.size
            if handle.getexif().get(_ORIENTATION, 1) in (5, 6, 7, 8):  # shown rotated 90°
                width, height = height, width
            if max_side is not None and handle.format == "JPEG" and max(handle.size) > max_side:
                scale = max_side / max(handle.size)
                target = (max(1, round(handle.width * scale)), max(1, round(handle.height * scale)))
                handle.draft(handle.mode, target)  # decode at 1/2, 1/4 or 1/8 scale
            handle.load()  # force decoding now: truncated files fail here, not later
            image = handle.copy()
        factor = _reduce_factor(image.size, max_side)
        if factor > 1:
            with suppress(ValueError):  # modes reduce() lacks (P, 1, I;16) stay full size
                image = image.reduce(factor)
        return ImageOps.exif_transpose(image), (height, width)
    except Image.DecompressionBombError as error:
        raise ImageReadError(
            f"Image file '{name}' is too large to decode safely ({error}). Expected at most "
            f"{Image.MAX_IMAGE_PIXELS} pixels; raise PIL.Image.MAX_IMAGE_PIXELS if you trust it."
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        reason = str(error).replace(repr(source), f"'{name}'")  # PIL names a stream by repr
        raise ImageReadError(
            f"Cannot decode image file '{name}': {reason}. Expected a readable image "
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


def load_rgb(source: ImageInput, max_side: int | None = None) -> np.ndarray:
    """Decode ``source`` into an ``(H, W, 3)`` uint8 RGB array, upright (EXIF orientation
    applied to files and PIL images).

    ``max_side``: files larger than this on their long side are shrunk while decoding
    (by an integer factor, so the long side stays at least ``max_side``); None decodes
    at full size. Arrays and PIL images are returned at their own size.
    """
    if max_side is not None and max_side < 1:
        raise ValueError(f"max_side must be at least 1, got {max_side}")
    if isinstance(source, str | Path):
        return _pil_to_rgb(_open_path(Path(source), max_side), source)
    if isinstance(source, Image.Image):
        return _pil_to_rgb(ImageOps.exif_transpose(source), source)
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source, source)
    raise ImageReadError(
        f"Cannot read {_describe(source)}: expected a path, a PIL image or a numpy array."
    )


def load_rgb_sized(path: str | Path, max_side: int) -> tuple[np.ndarray, tuple[int, int]]:
    """:func:`load_rgb` of a file shrunk at decode time to about ``max_side``, with the
    file's full displayed ``(height, width)``."""
    image, size = _decode(Path(path), max_side)
    return _pil_to_rgb(image, path), size


def load_rgb_bytes_sized(
    data: bytes, name: str, max_side: int
) -> tuple[np.ndarray, tuple[int, int]]:
    """:func:`load_rgb_sized` of a file's bytes read elsewhere (object storage, a Ray
    task); ``name`` names the file in errors. The same pixels as from the file itself."""
    if not data:
        raise ImageReadError(f"Image file '{name}' is empty (0 bytes).")
    image, size = _decode_file(io.BytesIO(data), name, max_side)
    return _pil_to_rgb(image, name), size


def load_mask(source: ImageInput) -> np.ndarray:
    """Decode a ground-truth mask into an ``(H, W)`` bool array (any non-zero pixel is True)."""
    if isinstance(source, str | Path):
        image = _open_path(Path(source))  # upright, like the image it belongs to
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
