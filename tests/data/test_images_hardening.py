"""Image decoding: EXIF orientation, decompression bombs, downscaling at decode time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anomalign.data.images import ImageReadError, load_mask, load_rgb


def _oriented_jpeg(path: Path, orientation: int) -> np.ndarray:
    """A 40x80 (HxW) JPEG whose left half is black, right half white, with an EXIF tag."""
    pixels = np.zeros((40, 80, 3), np.uint8)
    pixels[:, 40:] = 255
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation
    Image.fromarray(pixels).save(path, exif=exif.tobytes(), quality=95)
    return pixels


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    path = tmp_path / "phone.jpg"
    _oriented_jpeg(path, 6)  # "rotate 90 CW to display": displayed as 80x40
    rgb = load_rgb(path)
    assert rgb.shape == (80, 40, 3)
    assert rgb[:30].mean() < 20 and rgb[-30:].mean() > 235  # black on top after rotating
    with Image.open(path) as handle:
        assert load_rgb(handle).shape == (80, 40, 3)
    assert load_mask(path).shape == (80, 40)


def test_decompression_bomb_is_our_error_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bomb.png"
    Image.new("L", (200, 200)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 40000 px > 2x the limit
    with pytest.raises(ImageReadError, match=r"bomb.png' is too large to decode safely"):
        load_rgb(path)


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_large_image_is_shrunk_while_decoding(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"large{suffix}"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (1200, 2000, 3), dtype=np.uint8)).save(path)
    full = load_rgb(path)
    small = load_rgb(path, max_side=300)
    assert full.shape == (1200, 2000, 3)
    assert 300 <= max(small.shape[:2]) < 600
    assert small.shape[1] / small.shape[0] == pytest.approx(2000 / 1200, rel=0.02)
    assert load_rgb(path, max_side=5000).shape == full.shape


def test_methods_decode_huge_files_shrunk_and_ordinary_ones_whole(tmp_path: Path) -> None:
    from anomalign.backbones.preprocess import ImagePreprocessor
    from anomalign.data.images import METHOD_DECODE_SIDE

    wide = tmp_path / "wide.png"
    Image.new("RGB", (2 * METHOD_DECODE_SIDE + 100, 30), (200, 10, 10)).save(wide)
    ordinary = tmp_path / "ordinary.png"
    Image.new("RGB", (2 * METHOD_DECODE_SIDE - 1, 30), (10, 200, 10)).save(ordinary)
    assert load_rgb(wide, max_side=METHOD_DECODE_SIDE).shape == (15, METHOD_DECODE_SIDE + 50, 3)
    assert load_rgb(ordinary, max_side=METHOD_DECODE_SIDE).shape == load_rgb(ordinary).shape
    pixels = ImagePreprocessor(image_size=(32, 32))([wide, ordinary])
    assert pixels.shape == (2, 3, 32, 32)
