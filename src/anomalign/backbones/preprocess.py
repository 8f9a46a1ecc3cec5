"""Image preprocessing for a CLIP backbone: decode, squash-resize, normalise.

No centre crop: a crop would misalign maps and masks on non-square images
(datasets-and-metrics.md, geometry pitfall). Resizing uses PIL bicubic on 8-bit RGB,
as CLIP's own transforms do on PIL images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from anomalign.data.images import METHOD_DECODE_SIDE, ImageInput, load_rgb
from anomalign.data.transforms import resize_rgb

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _is_single(images: object) -> bool:
    return isinstance(images, str | Image.Image) or (
        isinstance(images, np.ndarray) or hasattr(images, "__fspath__")
    )


@dataclass(frozen=True)
class ImagePreprocessor:
    """Turn images into the normalised ``(B, 3, H, W)`` float tensor a backbone expects."""

    image_size: tuple[int, int]
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    interpolation: str = "bicubic"

    def normalize(self, rgb: np.ndarray) -> torch.Tensor:
        """``(H, W, 3)`` uint8 (already sized) -> normalised ``(3, H, W)`` float32 tensor."""
        tensor = (
            torch.from_numpy(np.array(rgb, dtype=np.uint8, copy=True)).permute(2, 0, 1).float()
            / 255.0
        )
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        return (tensor - mean) / std

    def __call__(self, images: ImageInput | Sequence[ImageInput]) -> torch.Tensor:
        """Decode, squash-resize and normalise one image or a list of images."""
        batch = [images] if _is_single(images) else list(images)
        if not batch:
            raise ValueError("No images given to preprocess.")
        return torch.stack(
            [
                self.normalize(
                    resize_rgb(
                        load_rgb(i, max_side=METHOD_DECODE_SIDE),
                        self.image_size,
                        self.interpolation,
                    )
                )
                for i in batch
            ]
        )
