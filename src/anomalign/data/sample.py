"""The one sample type that flows through the project, from loaders to results.

A :class:`Sample` only names files; pixels are decoded lazily by :meth:`Sample.load_image`
and :meth:`Sample.load_mask`, so listing a 100k-image benchmark costs no decoding.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np
from PIL import Image, UnidentifiedImageError

from anomalign.data.images import ImageReadError, load_mask, load_rgb
from anomalign.errors import DataError

Split = Literal["train", "validation", "test"]
SPLITS: tuple[str, ...] = get_args(Split)

#: The defect type every loader gives to normal images, whatever the layout calls them.
NORMAL_DEFECT_TYPE = "good"


@dataclass(frozen=True)
class Sample:
    """One image of a dataset with its ground truth.

    ``label`` is 0 (normal) or 1 (anomalous). ``mask_paths`` holds the pixel masks of an
    anomalous image (several for MVTec LOCO, united on load); it is empty for normal
    images and for anomalous images that only have an image-level label.
    """

    image_path: Path
    category: str
    split: Split
    label: int
    defect_type: str
    mask_paths: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_path", Path(self.image_path))
        object.__setattr__(self, "mask_paths", tuple(Path(p) for p in self.mask_paths))
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
        if self.label not in (0, 1):
            raise ValueError(f"label must be 0 or 1, got {self.label!r}")
        if self.label == 0 and self.mask_paths:
            raise ValueError(f"normal sample {self.image_path} must not have masks")

    @property
    def is_anomalous(self) -> bool:
        """True for label 1."""
        return self.label == 1

    @property
    def has_mask(self) -> bool:
        """True when pixel-level ground truth exists (at least one mask file)."""
        return bool(self.mask_paths)

    @property
    def mask_path(self) -> Path | None:
        """The mask file when there is exactly one, else None (see :attr:`mask_paths`)."""
        return self.mask_paths[0] if len(self.mask_paths) == 1 else None

    def image_size(self) -> tuple[int, int]:
        """``(height, width)`` of the image, read from the file header without decoding."""
        try:
            with Image.open(self.image_path) as handle:
                width, height = handle.size
        except FileNotFoundError as error:
            raise ImageReadError(f"Image file '{self.image_path}' does not exist.") from error
        except (UnidentifiedImageError, OSError) as error:
            raise ImageReadError(
                f"Cannot read the size of image file '{self.image_path}': {error}."
            ) from error
        return height, width

    def load_image(self) -> np.ndarray:
        """Decode the image as an ``(H, W, 3)`` uint8 RGB array."""
        return load_rgb(self.image_path)

    def load_mask(self, size: tuple[int, int] | None = None) -> np.ndarray:
        """The ``(H, W)`` bool ground truth: the union of all masks, all-False without one.

        ``size`` (``(height, width)``) avoids reading the image header when the caller
        already knows the image size. Masks must have the image's size.
        """
        expected = size if size is not None else self.image_size()
        union = np.zeros(expected, dtype=bool)
        for path in self.mask_paths:
            mask = load_mask(path)
            if mask.shape != union.shape:
                raise DataError(
                    f"Mask '{path}' has size {mask.shape[1]}x{mask.shape[0]} (WxH) but its "
                    f"image '{self.image_path}' is {expected[1]}x{expected[0]}; expected the "
                    "same size."
                )
            union |= mask
        return union
