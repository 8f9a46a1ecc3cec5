"""The synthetic generator is seeded, fast, atomic and its masks agree with its labels."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from anomalign.data.dataset import load_dataset
from anomalign.data.synthetic import DEFECT_TYPES, generate_synthetic_dataset
from anomalign.errors import DataError

SMALL = {"image_size": 32, "n_train": 3, "n_test_good": 2, "n_test_defect": 6}


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("layout", ["mvtec", "visa"])
def test_same_seed_same_bytes(tmp_path: Path, layout: str) -> None:
    a = generate_synthetic_dataset(tmp_path / "a", layout, seed=3, **SMALL)
    b = generate_synthetic_dataset(tmp_path / "b", layout, seed=3, **SMALL)
    c = generate_synthetic_dataset(tmp_path / "c", layout, seed=4, **SMALL)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)


@pytest.mark.parametrize("layout", ["mvtec", "visa"])
def test_loads_with_consistent_masks(tmp_path: Path, layout: str) -> None:
    root = generate_synthetic_dataset(tmp_path / "synth", layout, **SMALL)
    dataset = load_dataset(root)
    assert dataset.layout == layout
    assert dataset.categories and set(dataset.categories) == {"synth_texture", "synth_object"}
    for category in dataset.categories:
        part = dataset.by_category(category)
        assert len(part.train) == 3 and len(part.test) == 8
    for sample in dataset:
        image, mask = sample.load_image(), sample.load_mask()
        assert mask.shape == image.shape[:2]
        assert bool(mask.any()) == bool(sample.label)
    if layout == "mvtec":
        assert {s.defect_type for s in dataset if s.label} == set(DEFECT_TYPES)
    else:
        assert dataset[0].image_path.suffix == ".JPG"
        assert dataset[0].load_image().shape == (32, 48, 3)


def test_defects_change_pixels_inside_the_mask(tmp_path: Path) -> None:
    root = generate_synthetic_dataset(tmp_path / "s", image_size=64, n_train=0, n_test_good=0)
    for sample in load_dataset(root):
        mask = sample.load_mask()
        assert 4 <= mask.sum() < mask.size // 4, sample.image_path


def test_refuses_to_overwrite_and_leaves_nothing_behind(tmp_path: Path) -> None:
    root = generate_synthetic_dataset(tmp_path / "s", **SMALL)
    with pytest.raises(DataError, match="not empty"):
        generate_synthetic_dataset(root, **SMALL)
    generate_synthetic_dataset(root, seed=1, overwrite=True, **SMALL)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]
    assert np.isfinite(load_dataset(root)[0].load_image()).all()
