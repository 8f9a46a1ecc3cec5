"""Square tiles over non-square images, and stitching per-tile maps back.

AnoCLIP handles VisA's ~1.5:1 images by resizing the short side to the input size S and
running two SxS tiles, ``x[..., :S]`` and ``x[..., W-S:]``, averaging where they overlap.
This generalises it: each axis of length L >= S is covered by ``ceil(L / S)`` tiles whose
offsets are spread evenly from 0 to L - S (for S < L <= 2S exactly the two tiles above).
Numpy images are ``(H, W)`` or ``(H, W, C)``; torch tensors are ``(..., H, W)``; tiles are
stacked on a new leading axis. Stitching takes per-tile maps ``(N, ..., S, S)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from anomalign.data.transforms import resize_short_side


@dataclass(frozen=True)
class TileBox:
    """Where a square tile sits in the full image."""

    top: int
    left: int
    size: int

    @property
    def slices(self) -> tuple[slice, slice]:
        """``(rows, columns)`` slices of the tile."""
        return slice(self.top, self.top + self.size), slice(self.left, self.left + self.size)


def tile_offsets(length: int, tile: int) -> list[int]:
    """Start offsets of the fewest ``tile``-long windows covering ``length``, evenly spread."""
    if tile < 1 or length < tile:
        raise ValueError(f"cannot tile a side of {length} px with {tile} px tiles")
    count = -(-length // tile)
    if count == 1:
        return [0]
    span = length - tile
    return [(i * span + (count - 1) // 2) // (count - 1) for i in range(count)]


def tile_boxes(height: int, width: int, tile: int) -> list[TileBox]:
    """Tiles covering an ``height x width`` image, row by row."""
    return [
        TileBox(top, left, tile)
        for top in tile_offsets(height, tile)
        for left in tile_offsets(width, tile)
    ]


def _spatial(array: Any) -> tuple[int, int]:
    if isinstance(array, np.ndarray) and array.ndim == 3:
        return array.shape[0], array.shape[1]
    return int(array.shape[-2]), int(array.shape[-1])


def split_tiles(array: Any, tile: int) -> tuple[Any, list[TileBox]]:
    """Cut ``array`` into square tiles; returns ``(tiles stacked on axis 0, boxes)``."""
    height, width = _spatial(array)
    boxes = tile_boxes(height, width, tile)
    if isinstance(array, np.ndarray):
        return np.stack([array[b.slices] for b in boxes]), boxes
    import torch

    return torch.stack([array[(..., *b.slices)] for b in boxes]), boxes


def tile_image(
    rgb: np.ndarray, tile: int, interpolation: str = "bicubic"
) -> tuple[np.ndarray, list[TileBox], tuple[int, int]]:
    """Resize the short side of ``(H, W, 3)`` ``rgb`` to ``tile`` and cut it into tiles.

    Returns ``(tiles (N, tile, tile, 3), boxes, (height, width) of the resized image)``.
    """
    resized = resize_short_side(rgb, tile, interpolation)
    tiles, boxes = split_tiles(resized, tile)
    return tiles, boxes, resized.shape[:2]


def stitch_tiles(tiles: Any, boxes: list[TileBox], size: tuple[int, int]) -> Any:
    """Put per-tile maps ``(N, ..., S, S)`` back into one ``(..., H, W)`` map.

    Each pixel is the mean of the tiles covering it. Works on numpy arrays and torch
    tensors (the result keeps the input's type, dtype and device).
    """
    if len(tiles) != len(boxes):
        raise ValueError(f"{len(tiles)} tiles but {len(boxes)} boxes")
    height, width = size
    if isinstance(tiles, np.ndarray) or (
        isinstance(tiles, list) and isinstance(tiles[0], np.ndarray)
    ):
        stack = np.asarray(tiles)
        total = np.zeros((*stack.shape[1:-2], height, width), dtype=np.float64)
        count = np.zeros((height, width), dtype=np.float64)
        for tile_map, box in zip(stack, boxes, strict=True):
            total[(..., *box.slices)] += tile_map
            count[box.slices] += 1
        if (count == 0).any():
            raise ValueError("the tiles do not cover the whole output")
        result = total / count
        return result.astype(stack.dtype) if np.issubdtype(stack.dtype, np.floating) else result
    import torch

    stack = torch.stack(list(tiles)) if isinstance(tiles, list | tuple) else tiles
    dtype = stack.dtype if stack.is_floating_point() else torch.float32
    total = torch.zeros((*stack.shape[1:-2], height, width), dtype=dtype, device=stack.device)
    count = torch.zeros((height, width), dtype=dtype, device=stack.device)
    for tile_map, box in zip(stack, boxes, strict=True):
        total[(..., *box.slices)] += tile_map.to(dtype)
        count[box.slices] += 1
    if bool((count == 0).any()):
        raise ValueError("the tiles do not cover the whole output")
    return total / count
