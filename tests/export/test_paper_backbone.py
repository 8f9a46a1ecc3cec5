"""Parity once on the papers' architecture: ViT-B-16-plus-240 (random weights), batch 1.

Kept quick: zero-shot AnoCLIP restored from a bundle with random unit text features (no
prompt encoding through the text tower), two images, a fixed-batch export.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import anomalign
from anomalign.bundles import DetectorBundle
from anomalign.export import export_detector
from anomalign.methods.anoclip import AnoCLIPConfig

pytestmark = [
    pytest.mark.paper_backbone,
    pytest.mark.filterwarnings("ignore::anomalign.backbones.UntrainedBackboneWarning"),
]


def test_anoclip_on_vit_b_16_plus_240_agrees(paper_backbone, image_files, tmp_path: Path):
    generator = torch.Generator().manual_seed(0)
    dim = paper_backbone.embed_dim
    bundle = DetectorBundle(
        method="anoclip",
        backbone=str(paper_backbone.spec),
        config=AnoCLIPConfig.from_preset("default", image_score="single").to_dict(),
        tensors={
            "text_pair": F.normalize(torch.randn(dim, 2, generator=generator), dim=0),
            "prompt_basis": F.normalize(torch.randn(4, dim, generator=generator), dim=-1),
        },
        extra={"category": "bottle", "object_name": "bottle", "domain": "object"},
    )
    detector = anomalign.AnoCLIP.from_bundle(bundle, backbone=paper_backbone)
    images = image_files[:2]
    reference = detector.predict(images, batch_size=1)
    detector.set_threshold(float(reference.scores.mean()))
    result = export_detector(detector, tmp_path / "paper.onnx")
    assert result.size_bytes > 300e6  # the whole image tower is in the file
    got = anomalign.load_detector(result.path).predict(images, batch_size=1)
    assert got.maps.shape == (2, 240, 240)
    assert np.abs(got.scores - reference.scores).max() <= 1e-4
    assert np.abs(got.maps - reference.maps).max() <= 1e-4
    np.testing.assert_array_equal(got.decisions, detector.threshold.decide(reference.scores))
