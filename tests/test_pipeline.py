"""End to end: synthetic dataset -> AnoCLIP predictions -> metrics, on the tiny backbone."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from anomalign.backbones import Backbone
from anomalign.data import generate_synthetic_dataset, load_dataset
from anomalign.data.transforms import resize_mask
from anomalign.methods import create_detector
from anomalign.metrics import image_metrics, pixel_metrics


def test_synthetic_dataset_through_anoclip_to_metrics(
    tiny_backbone: Backbone, tmp_path: Path
) -> None:
    root = generate_synthetic_dataset(
        tmp_path / "synth", categories=("synth_texture",), image_size=64, n_test_defect=3
    )
    dataset = load_dataset(root)
    test = dataset.filter(category="synth_texture", split="test").samples
    detector = create_detector("anoclip", backbone=tiny_backbone, image_score="single")
    prediction = detector.predict([s.image_path for s in test], category="synth_texture")
    assert prediction.untrained_backbone and prediction.info["domain"] == "texture"
    labels = np.array([s.label for s in test])
    masks = np.stack([resize_mask(s.load_mask(), prediction.maps.shape[1:]) for s in test])
    assert labels.sum() == 3 and masks[labels == 1].any(axis=(1, 2)).all()
    image = image_metrics(labels, prediction.scores)
    pixel = pixel_metrics(prediction.maps, masks)
    for value in (image.auroc, image.ap, pixel.auroc, pixel.ap, pixel.aupro):
        assert value is not None and 0.0 <= value <= 1.0
