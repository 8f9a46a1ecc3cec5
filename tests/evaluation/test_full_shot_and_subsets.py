"""Full-shot runs (``--shots full``), test subsets (``--max-test``) and the textile layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anomalign.data import load_dataset
from anomalign.data.fewshot import FULL_SHOT, sample_shots, shots_text
from anomalign.data.sample import Sample
from anomalign.evaluation.config import parse_shots
from anomalign.evaluation.runner import stratified_subset as subset


def test_full_shot_parses_and_takes_every_normal_image(tmp_path: Path) -> None:
    assert parse_shots("1,4,full") == (1, 4, FULL_SHOT) and shots_text(FULL_SHOT) == "full"
    normals = [Sample(tmp_path / f"{i}.png", "c", "train", 0, "good") for i in range(5)]
    everything = sample_shots(normals, FULL_SHOT, seed=3)
    assert sorted(s.image_path for s in everything) == [s.image_path for s in normals]
    assert sample_shots(normals, 2, seed=3) == everything[:2]  # same seeded order


def test_max_test_keeps_each_labels_share() -> None:
    samples = [Sample(Path(f"n{i}.png"), "c", "test", 0, "good") for i in range(30)]
    samples += [Sample(Path(f"a{i}.png"), "c", "test", 1, "bad") for i in range(10)]
    kept = subset(samples, 8)
    assert sum(s.label for s in kept) == 2 and len(kept) == 8
    assert kept == [s for s in samples if s in kept]  # original order
    assert subset(samples, 8) == kept and subset(samples, 100) == samples


@pytest.fixture
def textile(tmp_path: Path) -> Path:
    for folder, count in (("nominal", 10), ("local", 3), ("global", 2)):
        (tmp_path / folder).mkdir()
        for i in range(count):
            Image.fromarray(np.full((8, 8), 100, np.uint8)).save(tmp_path / folder / f"t{i}.jpg")
    return tmp_path


def test_textile_layout(textile: Path) -> None:
    dataset = load_dataset(textile)  # detected
    assert dataset.layout == "conformal-textile" and dataset.categories == ["textile"]
    train = dataset.filter(split="train")
    assert len(train) == 2 and all(s.label == 0 for s in train)
    test = dataset.filter(split="test")
    assert sorted({s.defect_type for s in test if s.label}) == ["global", "local"]
    assert len(test) == 13
