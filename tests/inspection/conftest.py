"""Fixtures for the inspection tests: a small synthetic dataset and a fitted detector."""

from __future__ import annotations

from pathlib import Path

import pytest
from inspect_helpers import fit_detector

from anomalign.backbones import Backbone
from anomalign.data import generate_synthetic_dataset
from anomalign.methods import Detector

CATEGORY = "synth_texture"


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """64 px synthetic textures: 6 normal train, 3 normal + 6 defective test images."""
    return generate_synthetic_dataset(
        tmp_path_factory.mktemp("inspection") / "synth",
        categories=(CATEGORY,),
        image_size=64,
        n_train=6,
        n_test_good=3,
        n_test_defect=6,
    )


@pytest.fixture(scope="session")
def train_dir(synth_root: Path) -> Path:
    return synth_root / CATEGORY / "train" / "good"


@pytest.fixture(scope="session")
def test_dir(synth_root: Path) -> Path:
    return synth_root / CATEGORY / "test"


@pytest.fixture(scope="session")
def inspector(tiny_backbone: Backbone, train_dir: Path) -> Detector:
    """Zero-shot AnoCLIP+ (fresh adapter per image) calibrated on the normal train images,
    threshold at FPR 0.2."""
    return fit_detector(
        "anoclip+",
        train_dir,
        category=CATEGORY,
        backbone=tiny_backbone,
        method_options={"image_score": "single", "tta_steps": 2},
        fpr=0.2,
    )
