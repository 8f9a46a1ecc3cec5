"""AnoCLIP / AnoCLIP+ behaviour on the tiny backbone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from anomalign.backbones import Backbone
from anomalign.errors import ConfigError
from anomalign.methods import create_detector
from anomalign.methods.anoclip import AnoCLIP, AnoCLIPConfig, AnoCLIPModel
from anomalign.methods.anoclip.views import NUM_VIEWS, augmented_views


def _images(count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (48, 72, 3), dtype=np.uint8) for _ in range(count)]


def _text_model(dim: int = 16, **options) -> AnoCLIPModel:
    generator = torch.Generator().manual_seed(0)
    pair = F.normalize(torch.randn(dim, 2, generator=generator), dim=0)
    basis = F.normalize(torch.randn(6, dim, generator=generator), dim=-1)
    return AnoCLIPModel(AnoCLIPConfig.from_preset("official", **options), pair, basis)


def test_swapping_states_turns_maps_into_one_minus_p() -> None:
    model = _text_model()
    swapped = AnoCLIPModel(model.config, model.text_pair.flip(1), model.prompt_basis)
    tokens = torch.randn(2, 16, 16, generator=torch.Generator().manual_seed(1))
    maps = model.pixel_maps(tokens, (4, 4), (32, 32))
    torch.testing.assert_close(swapped.pixel_maps(tokens, (4, 4), (32, 32)), 1 - maps)
    assert float(maps.std()) > 0


@pytest.mark.parametrize("smoothing", ["mean3", "none"])
def test_planted_token_lights_up_its_own_cell(smoothing: str) -> None:
    model = _text_model(smoothing=smoothing)
    normal, abnormal = model.text_pair[:, 0], model.text_pair[:, 1]
    rows, cols, row, col = 5, 7, 1, 4  # non-square grid, cell off the diagonal
    tokens = normal.repeat(1, rows * cols, 1).clone()
    tokens[0, row * cols + col] = abnormal

    def centroid(values: torch.Tensor) -> tuple[float, float]:
        weights = values - values.min()
        ys, xs = torch.meshgrid(
            torch.arange(values.shape[0], dtype=torch.float32),
            torch.arange(values.shape[1], dtype=torch.float32),
            indexing="ij",
        )
        return float((weights * ys).sum() / weights.sum()), float(
            (weights * xs).sum() / weights.sum()
        )

    grid = model.grid_maps(tokens, (rows, cols))[0, 0]
    assert float(grid[row, col]) == pytest.approx(float(grid.max()))
    assert centroid(grid) == pytest.approx((row, col), abs=1e-4)
    pixels = model.pixel_maps(tokens, (rows, cols), (49 * 4 + 1, 69 * 6 + 1))[0]
    # align_corners=True puts cell (i, j) exactly at pixel (i * 49, j * 69) here.
    assert float(pixels[row * 49, col * 69]) == pytest.approx(float(pixels.max()))
    assert float(pixels[col * 49, row * 69]) < float(pixels.max()) - 1e-4  # not the transpose


def test_views_are_the_official_22(tiny_backbone: Backbone) -> None:
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    views = augmented_views(images)
    assert views.shape == (2, NUM_VIEWS, 3, 64, 64) and NUM_VIEWS == 22
    torch.testing.assert_close(views[:, 0], images)
    torch.testing.assert_close(views[:, 17], images.flip(-1))
    torch.testing.assert_close(views[:, 20], images.rot90(2, dims=(-2, -1)))
    gray = views[:, 18]
    assert torch.equal(gray[:, 0], gray[:, 1])
    pre = tiny_backbone.preprocessor
    raw_gray = augmented_views(images, pre.mean, pre.std)[:, 18]
    assert not torch.allclose(gray, raw_gray)
    # Translation by +0.2 in normalised coordinates samples 0.2 * (W-1) / 2 pixels right.
    ramp = torch.arange(64.0).view(1, 1, 1, 64).expand(1, 3, 64, 64)
    assert torch.allclose(augmented_views(ramp)[0, 9, 0, 32, 10], torch.tensor(10 + 6.3), atol=1e-3)


def test_predict_shapes_and_provenance(tiny_backbone: Backbone) -> None:
    detector = AnoCLIP(tiny_backbone, preset="default")
    prediction = detector.predict(_images(3), category="carpet", output_size=(40, 50))
    assert prediction.scores.shape == (3,) and prediction.maps.shape == (3, 40, 50)
    assert np.all((prediction.maps >= 0) & (prediction.maps <= 1))
    assert prediction.untrained_backbone
    info = prediction.info
    assert info["method"] == "anoclip" and info["preset"] == "default"
    assert info["domain"] == "texture" and info["object_name"] == "carpet"
    assert info["options"]["optimizer_scope"] == "image"


@pytest.mark.parametrize("tta", [False, True])
def test_batch_equals_loop_of_singles(tiny_backbone: Backbone, tta: bool) -> None:
    detector = AnoCLIP(tiny_backbone, tta=tta, preset="default")
    images = _images(3, seed=1)
    batch = detector.predict(images, category="bottle", batch_size=3)
    singles = [detector.predict(image, category="bottle") for image in images]
    np.testing.assert_allclose(batch.scores, [s.scores[0] for s in singles], atol=1e-5)
    np.testing.assert_allclose(batch.maps, np.stack([s.maps[0] for s in singles]), atol=1e-5)


def test_tta_is_seeded_changes_the_map_and_lowers_its_loss(tiny_backbone: Backbone) -> None:
    images = _images(2, seed=2)
    plain = AnoCLIP(tiny_backbone, preset="default").predict(images, category="bottle")
    first = AnoCLIP(tiny_backbone, tta=True, preset="default", seed=7).predict(
        images, category="bottle"
    )
    again = AnoCLIP(tiny_backbone, tta=True, preset="default", seed=7).predict(
        images, category="bottle"
    )
    other = AnoCLIP(tiny_backbone, tta=True, preset="default", seed=8).predict(
        images, category="bottle"
    )
    np.testing.assert_array_equal(first.maps, again.maps)
    assert not np.allclose(first.maps, plain.maps, atol=1e-6)
    assert not np.allclose(first.maps, other.maps, atol=1e-7)
    np.testing.assert_array_equal(first.scores, plain.scores)  # TTA never touches the image score

    # The adapted tokens have a lower loss than the freshly reset adapter, same noise.
    # With random weights the raw-cosine probabilities sit at p = 0.5, a flat point of
    # the loss, so the check sharpens the logits (an option of the method).
    detector = AnoCLIP(tiny_backbone, tta=True, preset="default", logit_scale=100.0)
    model = detector.model_for("bottle")
    tokens = tiny_backbone.encode(tiny_backbone.preprocess(images[:1])).local_tokens[0]
    generator = torch.Generator().manual_seed(3)
    noises = [0.055 * torch.randn(tokens.shape, generator=generator) for _ in range(8)]
    adapter = model.make_adapter()
    adapter.reset(torch.Generator().manual_seed(7))
    before = np.mean([model.loss_of(tokens, adapter, noise) for noise in noises])
    _, (losses,) = model.adapt(
        tokens[None], adapter, model.make_optimizer(adapter), torch.Generator().manual_seed(7)
    )
    after = np.mean([model.loss_of(tokens, adapter, noise) for noise in noises])
    assert after < before - 0.1
    assert losses[-1] < losses[0]


def test_official_preset_carries_optimizer_state_across_images(tiny_backbone: Backbone) -> None:
    a, b = _images(2, seed=4)

    def map_of_b(preset: str, order: list[np.ndarray]) -> np.ndarray:
        detector = AnoCLIP(tiny_backbone, tta=True, preset=preset, tta_lr=1e-2)
        prediction = detector.predict(order, category="bottle", batch_size=1)
        return prediction.maps[-1]  # b is always last

    assert not np.allclose(map_of_b("official", [a, b]), map_of_b("official", [b]), atol=1e-7)
    np.testing.assert_allclose(map_of_b("default", [a, b]), map_of_b("default", [b]), atol=1e-6)


def test_linear_adapter_and_gaussian_smoothing_run(tiny_backbone: Backbone) -> None:
    detector = AnoCLIP(
        tiny_backbone, tta=True, adapter="linear", smoothing="gaussian", image_score="single"
    )
    prediction = detector.predict(_images(1), category="bottle")
    assert prediction.maps.shape == (1, 64, 64)
    assert prediction.info["options"]["adapter"] == "linear"


def test_registry_and_option_errors(tiny_backbone: Backbone) -> None:
    assert create_detector("anoclip+", backbone=tiny_backbone).config.tta is True
    assert create_detector("AnoCLIP", backbone=tiny_backbone).name == "anoclip"
    with pytest.raises(ConfigError, match="no_such_option"):
        AnoCLIP(tiny_backbone, no_such_option=1)
    with pytest.raises(ConfigError, match="smoothing"):
        AnoCLIP(tiny_backbone, smoothing="median")
    with pytest.raises(ConfigError, match="preset"):
        AnoCLIP(tiny_backbone, preset="fast")
    with pytest.raises(ConfigError, match="Unknown method"):
        create_detector("no-such-method")  # winclip is a registered method now


def test_tiles_mode_stitches_two_tiles_like_the_visa_script(tiny_backbone: Backbone) -> None:
    wide = np.random.default_rng(5).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    tiled = AnoCLIP(tiny_backbone, preset="official", tiling="tiles").predict(
        wide, category="candle"
    )
    assert tiled.maps.shape == (1, 64, 96)
    single = AnoCLIP(tiny_backbone, preset="official", image_score="single")
    tiles = single.predict([wide[:, :64], wide[:, 32:]], category="candle")
    np.testing.assert_allclose(tiled.scores[0], tiles.scores.mean(), atol=1e-6)
    left_map, right_map = tiles.maps
    np.testing.assert_allclose(tiled.maps[0, :, :32], left_map[:, :32], atol=1e-6)
    np.testing.assert_allclose(tiled.maps[0, :, 64:], right_map[:, 32:], atol=1e-6)
    overlap = (left_map[:, 32:] + right_map[:, :32]) / 2
    np.testing.assert_allclose(tiled.maps[0, :, 32:64], overlap, atol=1e-6)


def test_tiles_mode_with_tta_is_seeded_and_resizes_on_request(tiny_backbone: Backbone) -> None:
    wide = np.random.default_rng(6).integers(0, 256, (40, 90, 3), dtype=np.uint8)

    def run() -> np.ndarray:
        detector = AnoCLIP(tiny_backbone, tta=True, tiling="tiles", adapter="linear")
        prediction = detector.predict([wide, wide[:, :60]], category="candle", output_size=(20, 30))
        assert len(prediction.info["tta_losses"]) == 2
        return prediction.maps

    first = run()
    assert first.shape == (2, 20, 30)
    np.testing.assert_array_equal(first, run())
    mixed = AnoCLIP(tiny_backbone, tiling="tiles").predict([wide, wide[:, :60]], category="candle")
    assert not mixed.stacked  # stitched maps keep each image's aspect: one map per image
    (h1, w1), (h2, w2) = (m.shape for m in mixed.maps)
    assert h1 == h2 == tiny_backbone.image_size[0] and w1 > w2


def test_fit_bundle_round_trip_gives_identical_predictions(
    tiny_backbone: Backbone, tmp_path
) -> None:
    from anomalign.bundles import load_bundle, save_bundle
    from anomalign.methods import Detector

    detector = AnoCLIP(tiny_backbone, tta=True, preset="default").fit(category="carpet")
    assert isinstance(detector, Detector)
    images = _images(2, seed=9)
    expected = detector.predict(images)
    assert expected.info["domain"] == "texture"
    path = save_bundle(detector.to_bundle(), tmp_path / "carpet.anomalign")
    restored = AnoCLIP.from_bundle(load_bundle(path), backbone=tiny_backbone)
    got = restored.predict(images)
    np.testing.assert_array_equal(got.maps, expected.maps)
    np.testing.assert_array_equal(got.scores, expected.scores)
    assert got.info["options"] == expected.info["options"]


def test_resize_filter_follows_the_option(tiny_backbone: Backbone) -> None:
    images = _images(1, seed=11)
    official = AnoCLIP(tiny_backbone, preset="official", image_score="single")
    bicubic = AnoCLIP(
        tiny_backbone, preset="official", image_score="single", interpolation="bicubic"
    )
    assert official.preprocessor.interpolation == "bilinear"
    assert tiny_backbone.preprocessor.interpolation == "bicubic"  # the backbone is untouched
    assert not np.allclose(official.predict(images).maps, bicubic.predict(images).maps, atol=1e-7)


def test_tta_loss_official_order_is_the_official_loss_func() -> None:
    """``tta_loss_order="official"`` evaluates vl_test.py's loss_func term by term; the
    default preset keeps the fused order (its outputs are unchanged)."""
    from anomalign.methods.anoclip.adapter import tta_loss
    from anomalign.methods.anoclip.config import AnoCLIPConfig

    generator = torch.Generator().manual_seed(0)
    probs = torch.randn(3, 2, 15, 15, 2, generator=generator).softmax(-1)
    clean, noisy = probs[:, 0], probs[:, 1]
    official = tta_loss(clean, noisy, 0.5, "official")
    for i in range(3):  # the official loss_func on the [clean, noisy] batch of image i
        pred = probs[i]
        soft = (-pred[0] * pred[0].log()).sum(-1).mean()
        mask = torch.zeros(pred[1:].shape)
        mask[..., 1] = 1
        hard = (-mask * pred[1:].log() - (1 - mask) * pred[0].log()).sum(-1).mean()
        assert float(official[i]) == float(1 * soft + 0.5 * hard)
    torch.testing.assert_close(official, tta_loss(clean, noisy, 0.5), atol=1e-6, rtol=1e-6)
    assert AnoCLIPConfig.from_preset("official").tta_loss_order == "official"
    assert AnoCLIPConfig.from_preset("default").tta_loss_order == "fused"


def test_second_fit_reads_the_prompt_cache_without_encoding(
    tiny_backbone: Backbone, tmp_path, monkeypatch
) -> None:
    from anomalign.backbones import TextEncoder
    from anomalign.backbones.prompt_cache import ENV_DIR

    monkeypatch.setenv(ENV_DIR, str(tmp_path))
    text = tiny_backbone.text
    text._cache.clear()
    first = AnoCLIP(tiny_backbone, preset="default").fit(category="bottle")
    assert len(list((tmp_path / "prompts").glob("*.safetensors"))) == 2  # normal, abnormal
    text._cache.clear()  # as in a new process

    def fail(self, token_ids):
        raise AssertionError("prompts were encoded again")

    monkeypatch.setattr(TextEncoder, "_encode_uncached", fail)
    second = AnoCLIP(tiny_backbone, preset="default").fit(category="bottle")
    for name in ("text_pair", "prompt_basis"):
        assert torch.equal(
            getattr(first.model_for("bottle"), name), getattr(second.model_for("bottle"), name)
        )
