"""Data layer: decoding images, dataset layouts, few-shot sampling and transforms."""

from anomalign.data.images import ImageInput, ImageReadError, load_mask, load_rgb

__all__ = ["ImageInput", "ImageReadError", "load_mask", "load_rgb"]
