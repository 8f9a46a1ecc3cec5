"""Fixtures for the service tests: a fitted zero-shot bundle on the tiny backbone."""

from __future__ import annotations

from pathlib import Path

import pytest

import anomalign
from anomalign.backbones import Backbone
from anomalign.data import generate_synthetic_dataset
from anomalign.inspection import fit_for_inspection
from anomalign.service import ServedDetector, load_served

CATEGORY = "synth_texture"


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """64 px synthetic textures: 4 normal train, 2 normal + 4 defective test images."""
    return generate_synthetic_dataset(
        tmp_path_factory.mktemp("service") / "synth",
        categories=(CATEGORY,),
        image_size=64,
        n_train=4,
        n_test_good=2,
        n_test_defect=4,
    )


@pytest.fixture(scope="session")
def test_images(synth_root: Path) -> list[Path]:
    return sorted((synth_root / CATEGORY / "test").rglob("*.png"))


@pytest.fixture(scope="session")
def bundle_path(
    tiny_backbone: Backbone, synth_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Zero-shot AnoCLIP calibrated on the normal train images, threshold at FPR 0.25."""
    out = tmp_path_factory.mktemp("service-bundle") / "synth.anomalign"
    detector = anomalign.create_detector("anoclip", backbone=tiny_backbone, image_score="single")
    fit_for_inspection(
        detector, synth_root / CATEGORY / "train" / "good", category=CATEGORY, fpr=0.25
    )
    return detector.save(out)


@pytest.fixture()
def served(bundle_path: Path, tiny_backbone: Backbone) -> ServedDetector:
    """A fresh detector per test (tests may wrap its predict)."""
    return load_served("synth", bundle_path, backbone=tiny_backbone)
