"""WinCLIP: window embeddings and scores equal a naive per-window loop, the harmonic
aggregation equals its per-patch definition, the image embedding is encode_image, and
WinCLIP+ fuses (zero-shot + few-shot) / 2 and round-trips through a bundle."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import anomalign
from anomalign.backbones.windows import window_indices
from anomalign.methods.winclip.model import class_scores, harmonic_aggregation, zero_shot_map
from anomalign.methods.winclip.prompts import prompt_ensemble


def naive_window_embedding(visual, pixels: torch.Tensor, patches: list[int]) -> torch.Tensor:
    """One window: CLS + the window's patch tokens (with positions) through the ViT."""
    x = visual.conv1(pixels).flatten(2).transpose(1, 2)  # (B, N, W)
    cls = visual.class_embedding.expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + visual.positional_embedding
    x = x[:, [0, *(p + 1 for p in patches)]]
    x = visual.transformer(visual.ln_pre(x))
    return visual.ln_post(x[:, 0]) @ visual.proj


def test_window_indices_are_every_stride_one_window() -> None:
    windows = window_indices((3, 4), 2)
    expected = [[r * 4 + c, r * 4 + c + 1, (r + 1) * 4 + c, (r + 1) * 4 + c + 1]
                for r in range(2) for c in range(3)]  # fmt: skip
    assert windows.tolist() == expected


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(2)]


def test_window_scores_equal_a_naive_per_window_loop(tiny_backbone, images) -> None:
    detector = anomalign.create_detector("winclip", backbone=tiny_backbone)
    detector.fit(category="bottle")
    visual = tiny_backbone.model.visual
    pixels = tiny_backbone.preprocess(images)
    tokens = tiny_backbone.encode_windows(pixels, detector.windows)
    with torch.no_grad():
        torch.testing.assert_close(tokens.image, tiny_backbone.model.encode_image(pixels))
        text = detector.text_embeddings("bottle")
        for scale_windows, embedded in zip(detector.windows, tokens.windows, strict=True):
            for w, patches in enumerate(scale_windows.tolist()):
                naive = naive_window_embedding(visual, pixels, patches)
                torch.testing.assert_close(embedded[:, w], naive, atol=1e-5, rtol=1e-5)
                torch.testing.assert_close(
                    class_scores(embedded[:, w], text), class_scores(naive, text)
                )
        # the map: per patch, harmonic mean over covering windows, then over scales
        image = class_scores(tokens.image, text)
        n = tiny_backbone.grid_size[0] * tiny_backbone.grid_size[1]
        expected_scales = [image[:, None].expand(-1, n)]
        for scale_windows, embedded in zip(detector.windows, tokens.windows, strict=True):
            scores = class_scores(embedded, text)
            per_patch = torch.zeros(len(images), n)
            for p in range(n):
                covering = [w for w, ps in enumerate(scale_windows.tolist()) if p in ps]
                per_patch[:, p] = len(covering) / (1 / scores[:, covering]).sum(dim=1)
            expected_scales.append(per_patch)
            aggregated = harmonic_aggregation(scores, detector.covers[len(expected_scales) - 2])
            torch.testing.assert_close(aggregated, per_patch)
        expected = len(expected_scales) / sum(1 / s for s in expected_scales)
        got = zero_shot_map(image, tokens.windows, detector.covers, text)
        torch.testing.assert_close(got, expected)
        score, grid = detector.score(images, "bottle")
    torch.testing.assert_close(grid.flatten(1), expected)
    torch.testing.assert_close(score, image)


def test_prompt_ensemble_sizes() -> None:
    normal, anomalous = prompt_ensemble("bottle")
    assert len(normal) == 7 * 22 and len(anomalous) == 4 * 22
    assert normal[0] == "a cropped photo of the bottle." and "damaged bottle" in anomalous[0]


def test_winclip_plus_fuses_and_round_trips(tiny_backbone, images, tmp_path) -> None:
    zero = anomalign.create_detector("winclip", backbone=tiny_backbone).fit(category="bottle")
    plus = anomalign.create_detector("winclip", backbone=tiny_backbone)
    plus.fit([images[0]], category="bottle")
    assert plus.describe()["variant"] == "WinCLIP+" and plus.shots == 1
    z, p = zero.predict(images), plus.predict(images)
    assert not np.allclose(z.maps, p.maps)
    # the reference image itself has zero few-shot distance: its map is half the zero-shot one
    np.testing.assert_allclose(p.maps[0], z.maps[0] / 2, rtol=1e-4, atol=1e-6)
    loaded = anomalign.load_detector(plus.save(tmp_path / "w.anomalign"), backbone=tiny_backbone)
    again = loaded.predict(images)
    np.testing.assert_array_equal(again.scores, p.scores)
    np.testing.assert_array_equal(again.maps, p.maps)
