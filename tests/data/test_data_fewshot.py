"""The k-shot sampler is deterministic, order-independent and location-independent."""

from __future__ import annotations

from pathlib import Path

import pytest
from data_trees import write_image

from anomalign.data.dataset import load_dataset
from anomalign.data.fewshot import (
    ShotSelection,
    sample_shots,
    shot_record,
    shots_from_files,
    stable_order,
)
from anomalign.data.sample import Sample
from anomalign.errors import ConfigError, DataError


def _normals(root: Path, n: int = 20) -> list[Sample]:
    return [
        Sample(root / "cat/train/good" / f"{i:03d}.png", "cat", "train", 0, "good")
        for i in range(n)
    ]


def test_same_seed_same_files_and_order_independent() -> None:
    normals = _normals(Path("/data/mvtec"))
    first = sample_shots(normals, 4, seed=1)
    assert sample_shots(list(reversed(normals)), 4, seed=1) == first
    assert sample_shots(normals[::2] + normals[1::2], 4, seed=1) == first


def test_independent_of_dataset_location() -> None:
    here = [s.image_path.name for s in sample_shots(_normals(Path("/a")), 4, seed=3)]
    there = [s.image_path.name for s in sample_shots(_normals(Path("/b/c/d")), 4, seed=3)]
    assert here == there


def test_pinned_choice_is_stable_across_machines() -> None:
    # sha256 ranking of relative paths: this exact choice holds on every platform/Python.
    chosen = [s.image_path.name for s in sample_shots(_normals(Path("/x")), 4, seed=0)]
    assert chosen == ["008.png", "003.png", "002.png", "000.png"]
    assert stable_order(["a", "b"], seed=0) == stable_order(["a", "b"], seed=0)


def test_different_seeds_differ_and_k_is_nested() -> None:
    normals = _normals(Path("/d"))
    draws = {tuple(s.image_path for s in sample_shots(normals, 4, seed)) for seed in range(5)}
    assert len(draws) > 1
    for seed in range(3):
        four = sample_shots(normals, 4, seed)
        assert sample_shots(normals, 2, seed) == four[:2]
        assert sample_shots(normals, 1, seed) == four[:1]


def test_sampler_errors() -> None:
    normals = _normals(Path("/d"), n=3)
    with pytest.raises(DataError, match="only 3 normal"):
        sample_shots(normals, 4, 0)
    with pytest.raises(ConfigError):
        sample_shots(normals, 0, 0)
    other = Sample(Path("/d/other.png"), "other", "train", 0, "good")
    with pytest.raises(ConfigError, match="per category"):
        sample_shots([*normals, other], 1, 0)
    bad = Sample(Path("/d/bad.png"), "cat", "test", 1, "crack")
    with pytest.raises(ConfigError, match=r"bad\.png"):
        sample_shots([*normals, bad], 1, 0)


def test_record_and_explicit_files_round_trip(mvtec_root: Path) -> None:
    dataset = load_dataset(mvtec_root)
    shots = dataset.shots("bottle", k=2, seed=7)
    assert all(s.category == "bottle" and s.split == "train" for s in shots)
    selection = ShotSelection.from_shots(shots, seed=7, root=dataset.root)
    assert all(f.startswith("bottle/train/good/") for f in selection.files)
    restored = ShotSelection.from_dict(selection.to_dict())
    assert restored == selection
    again = shots_from_files(restored.files, list(dataset), root=dataset.root)
    assert again == shots
    assert shot_record(again, dataset.root) == list(selection.files)
    with pytest.raises(DataError, match="not an image of the dataset"):
        shots_from_files(["bottle/train/good/999.png"], list(dataset), root=dataset.root)


def test_explicit_files_outside_a_dataset(tmp_path: Path) -> None:
    path = write_image(tmp_path / "ref.png")
    (shot,) = shots_from_files([path], category="widget")
    assert shot.category == "widget" and shot.label == 0
    with pytest.raises(DataError, match=r"missing\.png"):
        shots_from_files([tmp_path / "missing.png"])
