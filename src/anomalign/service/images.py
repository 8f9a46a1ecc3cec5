"""Uploaded bytes -> RGB arrays, safely: the format is sniffed from the bytes, the pixel
count is checked on the header before decoding, and every failure is a :class:`ServiceError`.

The file name and the client's content type are never trusted: a PNG named ``x.jpg`` is
read as a PNG, and a text file named ``x.png`` is refused with 415.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image

from anomalign.data.images import ImageReadError, load_rgb
from anomalign.service.errors import ServiceError

#: Leading bytes -> Pillow format name of the formats accepted.
SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


def sniff_format(data: bytes) -> str | None:
    """The image format of ``data`` from its magic bytes (PNG, JPEG, BMP, TIFF, WEBP)."""
    for magic, name in SIGNATURES:
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def decode_image(data: bytes, max_pixels: int, label: str = "image") -> np.ndarray:
    """Decode uploaded bytes into ``(H, W, 3)`` uint8 RGB.

    Raises:
        ServiceError: 415 when the bytes are not an accepted image format, 413 when the
            image has more than ``max_pixels`` pixels, 400 when it cannot be decoded.
    """
    if not data:
        raise ServiceError(400, "bad_image", f"{label} is empty (0 bytes).")
    fmt = sniff_format(data)
    if fmt is None:
        raise ServiceError(
            415,
            "unsupported_media_type",
            f"{label} is not a PNG, JPEG, BMP, TIFF or WebP image (judged by its bytes).",
        )
    try:
        with warnings.catch_warnings():
            # our own limit applies (below); Pillow still refuses > 2 * MAX_IMAGE_PIXELS
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=[fmt])
            width, height = image.size
            if width * height > max_pixels:
                raise ServiceError(
                    413,
                    "image_too_large",
                    f"{label} has {width}x{height} = {width * height} pixels; the limit is "
                    f"{max_pixels}.",
                )
            image.load()
    except ServiceError:
        raise
    except Image.DecompressionBombError as error:
        raise ServiceError(413, "image_too_large", f"{label}: {error}") from error
    except Exception as error:  # Pillow raises many types on corrupt data
        raise ServiceError(
            400, "bad_image", f"{label} cannot be decoded as {fmt}: {error}"
        ) from error
    try:
        return load_rgb(image)
    except ImageReadError as error:
        raise ServiceError(400, "bad_image", f"{label}: {error}") from error


def encode_png(array: np.ndarray) -> bytes:
    """PNG bytes of an ``(H, W, 3)`` uint8 image or an ``(H, W)`` uint16 map (16-bit grey)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
