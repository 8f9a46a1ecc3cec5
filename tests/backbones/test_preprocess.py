"""Image decoding and preprocessing: odd modes, arrays and unreadable files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anomalign.backbones import Backbone, ImagePreprocessor
from anomalign.data import ImageReadError, load_rgb


def _gradient(height: int = 20, width: int = 30) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 8, y * 12, (x + y) * 4], axis=-1).astype(np.uint8)


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "I;16", "I", "F", "CMYK", "1"])
def test_pil_modes_decode_to_rgb(mode: str, tmp_path: Path) -> None:
    rgb = Image.fromarray(_gradient())
    if mode == "I;16":
        image = Image.fromarray(np.asarray(rgb.convert("L")).astype(np.uint16) * 257)
    elif mode == "F":
        image = Image.fromarray(np.asarray(rgb.convert("L")).astype(np.float32) / 255.0)
    else:
        image = rgb.convert(mode)
    out = load_rgb(image)
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    if mode in ("L", "LA", "I;16", "F"):
        assert abs(int(out.astype(int).mean()) - int(np.asarray(rgb.convert("L")).mean())) <= 3
    if mode not in ("CMYK", "F", "I"):
        suffix = ".tiff" if mode in ("I;16", "I") else ".png"
        path = tmp_path / f"image{suffix}"
        image.save(path)
        assert load_rgb(path).shape == (20, 30, 3)


@pytest.mark.parametrize(
    "array",
    [
        _gradient()[..., 0],
        _gradient()[..., :1],
        _gradient(),
        np.concatenate([_gradient(), np.full((20, 30, 1), 255, np.uint8)], axis=-1),
        _gradient().astype(np.uint16) * 257,
        _gradient().astype(np.float32) / 255.0,
        _gradient()[..., 0] > 100,
    ],
    ids=["hw", "hw1", "hw3", "hw4", "uint16", "float", "bool"],
)
def test_numpy_inputs(array: np.ndarray) -> None:
    out = load_rgb(array)
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8


def test_uint16_and_float_scale_like_uint8() -> None:
    base = _gradient()
    np.testing.assert_array_equal(load_rgb(base.astype(np.uint16) * 257), base)
    np.testing.assert_array_equal(load_rgb(base.astype(np.float64) / 255.0), base)


@pytest.mark.parametrize(
    ("array", "match"),
    [
        (np.zeros((0, 5, 3), np.uint8), "zero size"),
        (np.zeros((4, 5, 2), np.uint8), "unsupported shape"),
        (np.full((4, 5), 2.0, np.float32), r"expected floats in \[0, 1\]"),
        (np.full((4, 5), np.nan, np.float32), "nan"),
    ],
)
def test_bad_arrays_are_rejected(array: np.ndarray, match: str) -> None:
    with pytest.raises(ImageReadError, match=match):
        load_rgb(array)


def test_unreadable_files_name_the_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty\.png.*empty"):
        load_rgb(empty)
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"not an image at all")
    with pytest.raises(ImageReadError, match="garbage.jpg"):
        load_rgb(garbage)
    truncated = tmp_path / "truncated.png"
    full = tmp_path / "full.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(full)
    truncated.write_bytes(full.read_bytes()[:300])
    with pytest.raises(ImageReadError, match="truncated.png"):
        load_rgb(truncated)
    with pytest.raises(ImageReadError, match="missing.png"):
        load_rgb(tmp_path / "missing.png")


def test_preprocessor_squashes_and_normalises(tiny_backbone: Backbone) -> None:
    wide = np.zeros((10, 40, 3), np.uint8)
    wide[:, 20:] = 255  # right half white: must stay on the right after a squash resize
    batch = tiny_backbone.preprocess([wide, Image.fromarray(wide).convert("L")])
    assert batch.shape == (2, 3, 64, 64)
    assert batch[0, :, :, :28].mean() < 0 < batch[0, :, :, 36:].mean()
    pre = ImagePreprocessor((64, 64))
    black = pre(np.zeros((8, 8, 3), np.uint8))
    expected = -torch.tensor(pre.mean) / torch.tensor(pre.std)
    torch.testing.assert_close(black[0, :, 0, 0], expected)
