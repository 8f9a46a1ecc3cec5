"""PatchCore: the coreset is the greedy k-center (checked against a brute-force loop and the
exact optimum), the scores follow the paper's reweighting, the map finds a planted defect,
and a bundle predicts as the fitted detector."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import torch

import anomalign
from anomalign.backbones import UntrainedBackboneWarning, load_backbone
from anomalign.components.memory import greedy_coreset, l2_nearest
from anomalign.methods.patchcore.model import score_patches


def brute_force_greedy(points: torch.Tensor, count: int, first: int) -> list[int]:
    """Greedy k-center recomputing every distance from scratch at each step."""
    chosen = [first]
    while len(chosen) < count:
        radius = [min(float(torch.dist(p, points[c])) for c in chosen) for p in points]
        chosen.append(int(np.argmax(radius)))
    return chosen


def covering_radius(points: torch.Tensor, centres: list[int]) -> float:
    return float(torch.cdist(points, points[centres]).min(dim=1).values.max())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_coreset_equals_brute_force_greedy_k_center(seed: int) -> None:
    points = torch.randn(40, 6, generator=torch.Generator().manual_seed(seed))
    chosen = greedy_coreset(points, 7, projection_dim=None, seed=seed).tolist()
    assert chosen == brute_force_greedy(points, 7, chosen[0])
    # the first centre is drawn with the seed: the same seed gives the same coreset
    assert greedy_coreset(points, 7, projection_dim=None, seed=seed).tolist() == chosen


def test_coreset_is_within_twice_the_optimal_k_center_radius() -> None:
    points = torch.randn(12, 3, generator=torch.Generator().manual_seed(5))
    k = 3
    optimum = min(covering_radius(points, list(c)) for c in itertools.combinations(range(12), k))
    for seed in range(4):
        chosen = greedy_coreset(points, k, projection_dim=None, seed=seed).tolist()
        assert covering_radius(points, chosen) <= 2 * optimum + 1e-6


def test_coreset_with_random_projection_is_greedy_on_the_projected_points() -> None:
    points = torch.randn(60, 32, generator=torch.Generator().manual_seed(0))
    chosen = greedy_coreset(points, 5, projection_dim=8, seed=3)
    generator = torch.Generator().manual_seed(3)
    projected = points @ (torch.randn(32, 8, generator=generator) / 8**0.5)
    first = int(torch.randint(60, (1,), generator=generator))
    assert chosen.tolist() == brute_force_greedy(projected, 5, first)


def test_scores_follow_the_papers_reweighting() -> None:
    generator = torch.Generator().manual_seed(0)
    memory = torch.randn(30, 4, generator=generator)
    features = torch.randn(2, 10, 4, generator=generator)
    patch, image = score_patches(features, memory, num_neighbors=3)
    for b in range(2):
        distances = torch.cdist(features[b], memory)
        torch.testing.assert_close(patch[b], distances.min(dim=1).values)
        star = int(patch[b].argmax())
        m_star = int(distances[star].argmin())
        support = torch.cdist(memory[m_star][None], memory)[0].argsort()[:3]
        d = torch.cdist(features[b, star][None], memory[support])[0]
        weight = 1 - torch.exp(d[0]) / torch.exp(d).sum()
        torch.testing.assert_close(image[b], weight * patch[b, star])
    _, plain = score_patches(features, memory, num_neighbors=1)
    torch.testing.assert_close(plain, patch.max(dim=1).values)


def test_chunked_l2_nearest_matches_cdist() -> None:
    generator = torch.Generator().manual_seed(1)
    queries, bank = torch.randn(50, 5, generator=generator), torch.randn(70, 5, generator=generator)
    d, i = l2_nearest(queries, bank, k=4, chunk=16)
    full = torch.cdist(queries, bank)
    expected_d, expected_i = full.topk(4, dim=1, largest=False)
    torch.testing.assert_close(d, expected_d, atol=1e-4, rtol=1e-4)
    assert torch.equal(i, expected_i)


def _texture(seed: int, size: int = 96) -> np.ndarray:
    """Smooth horizontal stripes with a little noise (normal images)."""
    rng = np.random.default_rng(seed)
    rows = 128 + 60 * np.sin(np.arange(size) / 3.0 + rng.uniform(0, 0.3))
    image = np.repeat(rows[:, None], size, axis=1) + rng.normal(0, 4, (size, size))
    return np.repeat(np.clip(image, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


@pytest.fixture(scope="module")
def cnn():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedBackboneWarning)
        backbone = load_backbone("timm:resnet18:random")
    return backbone


def test_map_localises_a_planted_defect_and_a_bundle_predicts_the_same(cnn, tmp_path) -> None:
    detector = anomalign.create_detector("patchcore", backbone=cnn, coreset_ratio=0.5)
    detector.fit([_texture(s) for s in range(3)], category="stripes")
    defect = _texture(10)
    defect[60:80, 20:40] = np.array([255, 0, 0], np.uint8)  # a red square: rows 60-80, cols 20-40
    prediction = detector.predict([_texture(11), defect], output_size=96)
    assert prediction.scores[1] > prediction.scores[0]
    row, col = np.unravel_index(np.argmax(prediction.maps[1]), (96, 96))
    assert 52 <= row <= 88 and 12 <= col <= 48, (row, col)
    inside = prediction.maps[1][60:80, 20:40].mean()
    assert inside > 2 * prediction.maps[1][:40].mean()
    assert prediction.untrained_backbone and detector.describe()["memory_size"] > 0

    loaded = anomalign.load_detector(detector.save(tmp_path / "pc.anomalign"), backbone=cnn)
    again = loaded.predict([_texture(11), defect], output_size=96)
    np.testing.assert_array_equal(again.scores, prediction.scores)
    np.testing.assert_array_equal(again.maps, prediction.maps)


def test_cached_features_give_the_same_prediction(cnn, tmp_path) -> None:
    from PIL import Image

    paths = []
    for seed in range(3):
        paths.append(tmp_path / f"{seed}.png")
        Image.fromarray(_texture(seed)).save(paths[-1])
    plain = anomalign.create_detector("patchcore", backbone=cnn).fit(paths[:2])
    cached = anomalign.create_detector("patchcore", backbone=cnn, cache_features=True)
    cached.fit(paths[:2])
    first = cached.predict(paths[2:], batch_size=1)
    np.testing.assert_allclose(first.scores, plain.predict(paths[2:], batch_size=1).scores)
    np.testing.assert_array_equal(cached.predict(paths[2:], batch_size=1).maps, first.maps)
