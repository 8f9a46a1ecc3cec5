"""★ The zero+few-shot hybrid: AnoCLIP exactly at shots=0, the memory branch alone at text
weight 0, the text map alone at text weight 1, and a bundle that predicts the same."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import anomalign
from anomalign.components.memory import PatchMemory
from anomalign.components.postprocess import upsample
from anomalign.data import generate_synthetic_dataset
from anomalign.methods.hybrid import weighted_harmonic


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], list[Path]]:
    root = generate_synthetic_dataset(
        tmp_path_factory.mktemp("hybrid") / "synth",
        categories=("synth_texture",),
        image_size=48,
        n_train=2,
        n_test_good=1,
        n_test_defect=1,
    )
    train = sorted((root / "synth_texture" / "train" / "good").glob("*.png"))
    test = sorted((root / "synth_texture" / "test").rglob("*.png"))
    return train, test


def _hybrid(backbone, **options):
    return anomalign.create_detector(
        "anoclip-hybrid", backbone=backbone, memory_blocks=(1, 2), image_score="single", **options
    )


def test_zero_shots_is_exactly_anoclip(tiny_backbone, images) -> None:
    _, test = images
    anoclip = anomalign.create_detector("anoclip", backbone=tiny_backbone, image_score="single")
    expected = anoclip.fit(category="synth_texture").predict(test)
    got = _hybrid(tiny_backbone).fit(category="synth_texture").predict(test)
    np.testing.assert_array_equal(got.scores, expected.scores)
    np.testing.assert_array_equal(got.maps, expected.maps)


def test_text_weight_zero_is_the_memory_branch_alone(tiny_backbone, images) -> None:
    train, test = images
    detector = _hybrid(tiny_backbone, text_weight=0.0).fit(train, category="synth_texture")
    got = detector.predict(test)
    # the memory branch by hand: one encoder pass, PatchMemory scores, AnoCLIP's smoothing
    pixels = detector.preprocessor(train)
    bank = tiny_backbone.encode(pixels, (1, 2)).intermediates
    memory = PatchMemory.from_tokens(bank)
    tokens = tiny_backbone.encode(detector.preprocessor(test), (1, 2))
    visual = memory.score(tokens.intermediates)
    model = detector.model_for("synth_texture")
    grid = model.smooth_grid(visual.view(len(test), 1, *tokens.grid_size))
    maps = upsample(grid, tiny_backbone.image_size, align_corners=True)[:, 0]
    np.testing.assert_array_equal(got.maps, maps.numpy())
    np.testing.assert_array_equal(got.scores, visual.max(dim=1).values.numpy())


def test_text_weight_one_is_anoclips_text_map(tiny_backbone, images) -> None:
    train, test = images
    anoclip = anomalign.create_detector("anoclip", backbone=tiny_backbone, image_score="single")
    expected = anoclip.fit(category="synth_texture").predict(test)
    hybrid = _hybrid(tiny_backbone, text_weight=1.0).fit(train, category="synth_texture")
    got = hybrid.predict(test)
    np.testing.assert_array_equal(got.maps, expected.maps)
    np.testing.assert_array_equal(got.scores, expected.scores)


def test_a_fitted_hybrid_bundle_predicts_the_same(tiny_backbone, images, tmp_path) -> None:
    train, test = images
    detector = _hybrid(tiny_backbone).fit(train, category="synth_texture")
    expected = detector.predict(test)
    assert detector.describe()["ours"] and detector.describe()["shots"] == len(train)
    loaded = anomalign.load_detector(
        detector.save(tmp_path / "h.anomalign"), backbone=tiny_backbone
    )
    got = loaded.predict(test)
    np.testing.assert_array_equal(got.maps, expected.maps)
    np.testing.assert_array_equal(got.scores, expected.scores)
    assert anomalign.list_methods() and "anoclip-hybrid" in anomalign.methods.method_names()


def test_weighted_harmonic() -> None:
    t, v = torch.tensor([0.2, 0.8, 0.0]), torch.tensor([0.4, 0.1, 0.5])
    torch.testing.assert_close(weighted_harmonic(t, v, 0.5), 2 * t * v / (t + v).clamp_min(1e-30))
    assert torch.equal(weighted_harmonic(t, v, 0.0), v) and torch.equal(
        weighted_harmonic(t, v, 1.0), t
    )
