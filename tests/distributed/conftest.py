"""Fixtures for the scale-out tests: a small synthetic folder and two detector bundles."""

from __future__ import annotations

from pathlib import Path

import pytest
from ray_helpers import CATEGORY

from anomalign.backbones import Backbone
from anomalign.data import generate_synthetic_dataset
from anomalign.inspection import fit_for_inspection
from anomalign.methods import create_detector


@pytest.fixture(scope="session")
def ray_synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """64 px synthetic textures: 6 normal train, 3 normal + 6 defective test images."""
    return generate_synthetic_dataset(
        tmp_path_factory.mktemp("distributed") / "synth",
        categories=(CATEGORY,),
        image_size=64,
        n_train=6,
        n_test_good=3,
        n_test_defect=6,
    )


def _bundle(backbone: Backbone, train: Path, out: Path, fpr: float, options: dict) -> Path:
    detector = create_detector("anoclip+", backbone=backbone, **options)
    fit_for_inspection(detector, train, category=CATEGORY, fpr=fpr)
    return detector.save(out)


@pytest.fixture(scope="session")
def bundle_a(tiny_backbone: Backbone, ray_synth: Path, tmp_path_factory) -> Path:
    """Zero-shot AnoCLIP+ (2 TTA steps), calibrated, threshold at FPR 0.2."""
    out = tmp_path_factory.mktemp("bundles") / "a.anomalign"
    options = {"image_score": "single", "tta_steps": 2}
    return _bundle(tiny_backbone, ray_synth / CATEGORY / "train" / "good", out, 0.2, options)


@pytest.fixture(scope="session")
def bundle_b(tiny_backbone: Backbone, ray_synth: Path, tmp_path_factory) -> Path:
    """Another detector (no TTA, threshold at FPR 0.5): another fingerprint."""
    out = tmp_path_factory.mktemp("bundles") / "b.anomalign"
    options = {"image_score": "single", "tta_steps": 1}
    return _bundle(tiny_backbone, ray_synth / CATEGORY / "train" / "good", out, 0.5, options)
