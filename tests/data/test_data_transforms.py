"""Tiling covers non-square images and stitches back exactly; resizing keeps pairs aligned."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from anomalign.data.dataset import load_dataset
from anomalign.data.tiling import split_tiles, stitch_tiles, tile_boxes, tile_image, tile_offsets
from anomalign.data.transforms import load_pair, resize_map, short_side_size


def test_visa_two_tiles_match_the_reference_slicing() -> None:
    image = torch.rand(1, 3, 240, 360)
    tiles, boxes = split_tiles(image, 240)
    assert len(boxes) == 2
    assert torch.equal(tiles[0], image[..., :240])
    assert torch.equal(tiles[1], image[..., 360 - 240 :])
    for width in (241, 300, 480):
        assert tile_offsets(width, 240) == [0, width - 240]


@pytest.mark.parametrize(("height", "width"), [(240, 240), (240, 360), (240, 700), (500, 240)])
def test_tiles_cover_and_stitch_back(height: int, width: int) -> None:
    boxes = tile_boxes(height, width, 240)
    covered = np.zeros((height, width), dtype=int)
    for box in boxes:
        covered[box.slices] += 1
    assert covered.min() >= 1
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    linear = 0.5 * yy + 0.25 * xx + 3.0
    tiles, boxes = split_tiles(linear, 240)
    assert np.allclose(stitch_tiles(tiles, boxes, (height, width)), linear)
    const = torch.full((2, height, width), 7.0)
    ttiles, tboxes = split_tiles(const, 240)
    assert ttiles.shape == (len(tboxes), 2, 240, 240)
    assert torch.allclose(stitch_tiles(ttiles, tboxes, (height, width)), const)


def test_overlap_is_averaged() -> None:
    tiles = np.stack([np.zeros((4, 4)), np.ones((4, 4))])
    boxes = tile_boxes(4, 6, 4)
    out = stitch_tiles(tiles, boxes, (4, 6))
    assert np.allclose(out[:, :2], 0) and np.allclose(out[:, 2:4], 0.5)
    assert np.allclose(out[:, 4:], 1)


def test_tile_image_resizes_short_side() -> None:
    rgb = np.zeros((1000, 1500, 3), dtype=np.uint8)
    assert short_side_size(1000, 1500, 240) == (240, 360)
    tiles, _, size = tile_image(rgb, 240)
    assert tiles.shape == (2, 240, 240, 3) and size == (240, 360)


def test_load_pair_resizes_together(mvtec_root: Path) -> None:
    sample = next(s for s in load_dataset(mvtec_root) if s.label)
    pair = load_pair(sample, 16)
    assert pair.image.shape == (16, 16, 3) and pair.mask.shape == (16, 16)
    assert pair.mask.dtype == bool and pair.mask.sum() == 16 and pair.original_size == (8, 8)
    back = resize_map(pair.mask.astype(np.float32), pair.original_size)
    assert back.shape == (8, 8)
    assert resize_map(torch.ones(2, 16, 16), (4, 6)).shape == (2, 4, 6)


@pytest.mark.parametrize(
    ("shape", "size"),
    [((2, 15, 20), (240, 240)), ((3, 240, 240), (1024, 700)), ((64, 64), (33, 47)),
     ((1, 7, 5), (100, 3)), ((2, 1, 9), (4, 4))],
)  # fmt: skip
def test_numpy_map_resize_matches_torch_bilinear(shape, size) -> None:
    """resize_map's numpy path (no torch import) agrees with F.interpolate to float32 ulps."""
    import torch.nn.functional as F

    maps = np.random.default_rng(1).random(shape, dtype=np.float32)
    flat = torch.from_numpy(maps).reshape(-1, 1, *shape[-2:])
    expected = F.interpolate(flat, size=size, mode="bilinear", align_corners=False)
    got = resize_map(maps, size)
    assert got.dtype == np.float32 and got.shape == (*shape[:-2], *size)
    np.testing.assert_allclose(got, expected.reshape(got.shape).numpy(), atol=3e-7, rtol=0)
