"""Data layer: decoding images, dataset layouts, few-shot sampling and transforms."""

from anomalign.data.categories import TEXTURE_CATEGORIES, is_texture
from anomalign.data.dataset import Dataset, SummaryRow, load_dataset
from anomalign.data.fewshot import ShotSelection, sample_shots, shot_record, shots_from_files
from anomalign.data.images import ImageInput, ImageReadError, load_mask, load_rgb
from anomalign.data.layouts import LAYOUTS, detect_layout
from anomalign.data.sample import NORMAL_DEFECT_TYPE, Sample, Split
from anomalign.data.synthetic import generate_synthetic_dataset

__all__ = [
    "LAYOUTS",
    "NORMAL_DEFECT_TYPE",
    "TEXTURE_CATEGORIES",
    "Dataset",
    "ImageInput",
    "ImageReadError",
    "Sample",
    "ShotSelection",
    "Split",
    "SummaryRow",
    "detect_layout",
    "generate_synthetic_dataset",
    "is_texture",
    "load_dataset",
    "load_mask",
    "load_rgb",
    "sample_shots",
    "shot_record",
    "shots_from_files",
]
