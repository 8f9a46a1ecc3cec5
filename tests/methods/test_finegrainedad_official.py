"""FineGrainedAD's ``official`` preset: each official computation on small models.

The official code is RetoFan233/FineGrainedAD (finegrainedad.md §3.1, §9.6); each test
shows one behaviour of it on the tiny backbone or a 12-layer narrow config.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from anomalign.backbones import Backbone, UntrainedBackboneWarning, load_backbone
from anomalign.bundles import load_bundle
from anomalign.data.transforms import resize_linear_cv2
from anomalign.errors import ConfigError
from anomalign.methods import load_detector
from anomalign.methods.finegrainedad import FineGrainedAD, FineGrainedADConfig
from anomalign.methods.finegrainedad.detector import GenericCaptionWarning, derived_vocabularies
from anomalign.methods.finegrainedad.losses import mlsa_loss
from anomalign.methods.finegrainedad.model import QueryMatcher, matching_keys
from anomalign.methods.finegrainedad.prompt_learner import (
    LevelFeatures,
    MultiLevelPromptLearner,
    build_prompt_texts,
)
from anomalign.methods.finegrainedad.regions import (
    aggregate_regions,
    aggregate_regions_official,
    dpc_knn,
    dpc_knn_batched,
    region_weights,
)
from anomalign.methods.finegrainedad.train import compute_region_weights
from anomalign.prompts import derive_vocabularies, generic_caption, list_shipped, load_shipped

ASSETS = Path(__file__).parent.parent / "assets" / "model_configs"
FAST = dict(memory_blocks=(1, 2), seg_epochs=2, cls_epochs=0)


def _texture(seed: int, size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    stripes = 0.5 + 0.4 * np.sin((xx + yy) * 2 * np.pi / 8)
    base = np.stack([stripes, stripes * 0.8, stripes * 0.6], axis=-1)
    return (np.clip(base + rng.normal(0, 0.03, base.shape), 0, 1) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def narrow12() -> Backbone:
    """A 12-layer, 32-wide CLIP (random weights): blocks 3 and 8 exist, as in the paper."""
    import open_clip

    from anomalign.backbones.openclip_family import register_model_configs

    register_model_configs()
    open_clip.add_model_config(ASSETS / "anomalign-narrow12.json")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedBackboneWarning)
        return load_backbone("anomalign-narrow12:random")


# -- 1. memory features: the hooks' aliasing ---------------------------------------------


def test_aliased_block_tokens_are_clean_output_plus_next_attention_residual(narrow12) -> None:
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    clean = narrow12.encode(pixels, (3, 8, 12)).intermediates
    aliased = narrow12.encode(pixels, (3, 8, 12), aliased=True).intermediates
    visual = narrow12.model.visual
    blocks = visual.transformer.resblocks
    with torch.no_grad():
        x = visual._embeds(pixels)
        outputs = []
        for block in blocks:
            x = block(x)  # open_clip's own (single-path) block: the original stream
            outputs.append(x)
        for number in (3, 8):
            out = outputs[number - 1]
            nxt = blocks[number]  # block number + 1
            h = nxt.ln_1(out)
            residual = nxt.ls_1(nxt.attn(h, h, h, need_weights=False)[0])
            torch.testing.assert_close(clean[number], out[:, 1:], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(
                aliased[number], (out + residual)[:, 1:], atol=1e-5, rtol=1e-5
            )
            assert not torch.allclose(aliased[number], clean[number])
    torch.testing.assert_close(aliased[12], clean[12])  # no block after the last one


def test_memory_features_option_feeds_the_memory(tiny_backbone) -> None:
    images = [_texture(0), _texture(1)]
    made = {
        mode: FineGrainedAD(
            tiny_backbone, preset="default", memory_features=mode, **{**FAST, "seg_epochs": 0}
        ).fit(images, category="bottle")
        for mode in ("clean", "aliased")
    }
    pixels = tiny_backbone.preprocess(images)
    expected = tiny_backbone.encode(pixels, (1,), aliased=True).intermediates[1]
    bank = made["aliased"].model.memory.banks[1]
    torch.testing.assert_close(bank, F.normalize(expected.reshape(-1, expected.shape[-1]), dim=-1))
    assert not torch.allclose(bank, made["clean"].model.memory.banks[1])


# -- 2. region-weight pooling --------------------------------------------------------------


def test_unfold_view_pooling_equals_the_official_reshape() -> None:
    generator = torch.Generator().manual_seed(3)
    shots, regions = 2, 3
    labels = torch.randint(0, regions, (shots, 3600), generator=generator)
    matched = torch.tensor([2, 0, 1])
    ours = torch.stack(
        [region_weights(lab, matched, (60, 60), 4, 1.5, "unfold_view") for lab in labels], dim=1
    )
    # The official computation on the (E+1, k, 60, 60) weight tensor, written out.
    full = 1 + 1.5 * (labels[None] == matched.view(-1, 1, 1)).float().view(regions, shots, 60, 60)
    official = F.unfold(full, kernel_size=4, stride=4).view(regions, shots, -1, 16).mean(dim=-1)
    torch.testing.assert_close(ours, official)
    true_pool = torch.stack(
        [region_weights(lab, matched, (60, 60), 4, 1.5, "avg") for lab in labels], dim=1
    )
    torch.testing.assert_close(true_pool, F.avg_pool2d(full, 4).flatten(2))
    assert not torch.allclose(ours, true_pool)
    # a single block: both poolings agree on a constant map
    constant = region_weights(torch.zeros(3600, dtype=torch.long), matched, (60, 60), 4)
    torch.testing.assert_close(
        constant,
        region_weights(
            torch.zeros(3600, dtype=torch.long), matched, (60, 60), 4, 1.5, "unfold_view"
        ),
    )


# -- 4. stage-2 background assignment ------------------------------------------------------


def _points() -> torch.Tensor:
    """1-D points (distance = |a - b|): two background tokens next to foreground blob A
    (0.0, 0.01, 0.5) and blob B (5.0, 5.01, 5.5); with k=2 and increasing tie-break noise
    the centres are 5.01 (cluster 0) and 0.01 (cluster 1)."""
    return torch.tensor([[-3.0], [-3.1], [0.0], [0.01], [0.5], [5.0], [5.01], [5.5]])


NOISE = torch.linspace(0, 1, 8)


def test_masked_assignment_puts_background_in_cluster_zero() -> None:
    x = _points()
    foreground = torch.tensor([False, False, True, True, True, True, True, True])
    masked = dpc_knn(x, 2, 2, foreground, assign="masked", noise=NOISE)
    nearest = dpc_knn(x, 2, 2, foreground, assign="unmasked", noise=NOISE)
    assert nearest.tolist() == [1, 1, 1, 1, 1, 0, 0, 0]  # background: nearest centre (A)
    assert masked.tolist() == [0, 0, 1, 1, 1, 0, 0, 0]  # equally far from both: cluster 0
    batched = dpc_knn_batched(x[None], 2, 2, foreground[None], NOISE[None])
    assert batched[0].tolist() == masked.tolist()


def test_background_takes_token_zeros_label_after_stage_two(monkeypatch) -> None:
    """aggregate_regions: background tokens end in cluster 0 when token 0 is background,
    and in token 0's own cluster when token 0 is foreground (finegrainedad.md §3.1)."""
    import anomalign.methods.finegrainedad.regions as regions

    calls = []

    def fake(x, n, k, token_mask=None, generator=None, assign="unmasked", noise=None):
        calls.append(assign)
        if token_mask is None:  # stage 1: background = label 1 on tokens 0, 1
            labels = torch.zeros(len(x), dtype=torch.long)
            labels[:2] = 1
            return labels
        return torch.tensor([2, 1, 1, 2, 0, 1])  # stage 2

    monkeypatch.setattr(regions, "dpc_knn", fake)
    tokens = F.normalize(torch.eye(6)[:, :4] + 0.1, dim=-1)
    normal = torch.eye(4)[:3]
    normal[-1] = tokens[:2].mean(0)  # the background prompt looks like tokens 0 and 1
    labels = aggregate_regions(tokens, normal, background="masked")
    assert calls[-1] == "masked"
    assert labels.tolist() == [2, 2, 1, 2, 0, 1]  # background -> token 0's label
    # with the real clustering, token 0 in the background ends in cluster 0
    monkeypatch.undo()
    x = _points()
    fg = torch.tensor([False, False, True, True, True, True, True, True])
    lab = dpc_knn(x, 2, 2, fg, assign="masked", noise=NOISE)
    assert torch.where(fg, lab, lab[0]).tolist() == [0, 0, 1, 1, 1, 0, 0, 0]


# -- 3. official multi-shot assignment -------------------------------------------------------


def test_official_multishot_keeps_each_shots_labels_and_image_zeros_background() -> None:
    generator = torch.Generator().manual_seed(5)
    tokens = F.normalize(torch.randn(3, 64, 8, generator=generator), dim=-1)
    normal = F.normalize(torch.randn(3, 8, generator=generator), dim=-1)
    noise = (torch.rand(3, 64, generator=generator), torch.rand(3, 64, generator=generator))
    labels = aggregate_regions_official(tokens, normal, noise)
    assert labels.shape == (3, 64) and int(labels.max()) <= 2
    # image 0 alone gives the same labels as the single-image clustering on the masked
    # distances, with the same noise
    x = tokens[0] @ normal.T / (tokens[0].norm(dim=-1, keepdim=True) * normal.norm(dim=-1))
    stage1 = dpc_knn(x, 2, 1, noise=noise[0][0])
    zero = (tokens[0][stage1 == 0].mean(0) @ normal[-1]) >= (
        tokens[0][stage1 == 1].mean(0) @ normal[-1]
    )
    background = stage1 == (0 if zero else 1)
    for shot in range(3):
        own = labels[shot]
        assert bool((own[background] == own[0]).all())  # image 0's background positions
    assert not torch.equal(labels[1], labels[0]) or not torch.equal(labels[2], labels[0])


def test_official_scope_stores_per_shot_weights_matched_on_image_zero(tiny_backbone) -> None:
    texts = build_prompt_texts(load_shipped("bottle"), derived_vocabularies(load_shipped("bottle")))
    learner = MultiLevelPromptLearner(tiny_backbone.text, texts)
    images = [_texture(s) for s in range(3)]
    config = FineGrainedADConfig.from_preset("official", **FAST)
    weights, labels = compute_region_weights(tiny_backbone, images, learner, config)
    assert weights.shape == (len(texts.components) + 1, 3, 16) and len(labels) == 3
    again, _ = compute_region_weights(tiny_backbone, images, learner, config)
    torch.testing.assert_close(weights, again)  # seeded


def test_shuffle_with_identity_orders_equals_no_shuffle(tiny_backbone) -> None:
    images = [_texture(s) for s in range(2)]
    options = dict(preset="default", cluster_scope="official", **FAST)
    plain = FineGrainedAD(tiny_backbone, **options).fit(images, category="bottle")
    identity = [torch.arange(2)] * 2
    shuffled = FineGrainedAD(tiny_backbone, shuffle_shots=True, **options).fit(
        images, category="bottle", initial={"seg": {"shot_orders": identity}}
    )
    assert plain.fit_info["seg_losses"] == shuffled.fit_info["seg_losses"]
    swapped = FineGrainedAD(tiny_backbone, shuffle_shots=True, **options).fit(
        images, category="bottle", initial={"seg": {"shot_orders": [torch.tensor([1, 0])] * 2}}
    )
    assert swapped.fit_info["seg_losses"] != plain.fit_info["seg_losses"]


# -- 5. anchors, galleries and L_reg from raw features ---------------------------------------


def _level(generator, rows=(1, 2, 3)) -> LevelFeatures:
    raw = [torch.randn(n, 4, generator=generator) * torch.rand(n, 1, generator=generator) * 5
           for n in rows]  # fmt: skip
    normed = [F.normalize(r, dim=-1) for r in raw]
    return LevelFeatures(*normed, tuple(raw))


def test_raw_average_normalises_after_the_mean() -> None:
    generator = torch.Generator().manual_seed(1)
    level = _level(generator)
    normal_raw, handle_raw, learned_raw = level.raw
    t_n, t_a = level.means("raw")
    torch.testing.assert_close(t_n, F.normalize(normal_raw.mean(0), dim=-1))
    torch.testing.assert_close(
        t_a, F.normalize(torch.cat([handle_raw, learned_raw]).mean(0), dim=-1)
    )
    assert not torch.allclose(level.pair("raw"), level.pair("normalized"))


def test_reg_loss_sums_raw_component_features_under_raw() -> None:
    generator = torch.Generator().manual_seed(2)
    levels = {
        name: _level(generator) for name in ("component_0", "component_1", "image", "background")
    }
    anchor = F.normalize(torch.randn(2, 5, 4, generator=generator), dim=-1)
    scale = torch.tensor(4.6)
    _, raw_parts = mlsa_loss(anchor, levels, scale, average="raw")
    _, normed_parts = mlsa_loss(anchor, levels, scale, average="normalized")
    summed = F.normalize(levels["component_0"].raw[2] + levels["component_1"].raw[2], dim=-1)
    expected = (
        levels["image"].learned.mean(0) - summed.mean(0) - levels["background"].normal.mean(0)
    ).norm()
    assert raw_parts["reg"] == pytest.approx(float(expected), rel=1e-6)
    assert raw_parts["reg"] != pytest.approx(normed_parts["reg"])
    assert raw_parts["image"] != pytest.approx(normed_parts["image"])


# -- 6. which prompts score the image ---------------------------------------------------------


def test_seg_image_gallery_scores_the_image_with_the_segmentation_prompts(tiny_backbone) -> None:
    images = [_texture(s) for s in range(2)]
    detector = FineGrainedAD(tiny_backbone, preset="default", image_gallery="seg", **FAST).fit(
        images, category="bottle"
    )
    torch.testing.assert_close(detector.model.cls_pairs, detector.model.seg_pairs)
    assert detector.fit_info["cls_losses"] == [] and detector.fit_info["image_gallery"] == "seg"


# -- 7. precision and pre-resize -------------------------------------------------------------


def test_cv2_linear_resize_follows_cv2s_fixed_point_rounding() -> None:
    row = np.array([[[0, 0, 0], [255, 255, 255]]], dtype=np.uint8)
    # hand-computed with cv2's INTER_LINEAR taps: 0.25*255 -> 64, 0.75*255 -> 191
    assert resize_linear_cv2(row, (1, 4))[0, :, 0].tolist() == [0, 64, 191, 255]
    image = np.random.default_rng(0).integers(0, 256, (6, 8, 3)).astype(np.uint8)
    assert resize_linear_cv2(image, (6, 8)) is not None
    np.testing.assert_array_equal(resize_linear_cv2(image, (6, 8)), image)
    half = resize_linear_cv2(image, (3, 4))  # exact 2x: cv2 switches to INTER_AREA
    expected = (image.reshape(3, 2, 4, 2, 3).astype(int).sum(axis=(1, 3)) + 2) >> 2
    np.testing.assert_array_equal(half, expected)
    flat = np.full((5, 7, 3), 77, np.uint8)
    assert set(np.unique(resize_linear_cv2(flat, (1024, 1024)))) == {77}


def test_official_pre_resize_and_bf16_training_run(tiny_backbone) -> None:
    images = [_texture(s) for s in range(2)]
    options = dict(seg_precision="bf16", pre_resize="cv2_1024", **FAST)
    detector = FineGrainedAD(tiny_backbone, preset="default", **options)
    detector.fit(images, category="bottle")
    assert all(np.isfinite(detector.fit_info["seg_losses"]))
    assert detector.predict(images[:1], output_size=64).maps.shape == (1, 64, 64)


# -- 8. injected initial tensors ------------------------------------------------------------


def test_initial_tensors_replace_the_seeded_draws(tiny_backbone) -> None:
    texts = build_prompt_texts(load_shipped("bottle"), derived_vocabularies(load_shipped("bottle")))
    width = tiny_backbone.text.width
    given = {
        "normal_ctx": torch.full((1, 4, width), 0.01),
        "abnormal_ctx": torch.full((4, 1, width), -0.02),
        "normal_w": torch.tensor([0.1, 0.2, 0.3, 0.4]),
        "abnormal_w": torch.tensor([[0.5], [0.6], [0.7], [0.8]]),  # official (1,) each
    }
    learner = MultiLevelPromptLearner(tiny_backbone.text, texts, initial=given)
    torch.testing.assert_close(learner.normal_ctx.data, given["normal_ctx"])
    torch.testing.assert_close(learner.abnormal_w.data, given["abnormal_w"].view(4))
    with pytest.raises(ConfigError, match="Unknown initial prompt tensors"):
        MultiLevelPromptLearner(tiny_backbone.text, texts, initial={"ctx": torch.zeros(1)})
    detector = FineGrainedAD(tiny_backbone, preset="default", **{**FAST, "seg_epochs": 0})
    detector.fit([_texture(0)], category="bottle", initial={"seg": given})
    torch.testing.assert_close(detector.learned["seg.normal_ctx"], given["normal_ctx"])
    with pytest.raises(ConfigError, match="Unknown initial"):
        detector.fit([_texture(0)], category="bottle", initial={"seg": {"noise": 1}})


def test_qformer_parameters_can_be_injected(tiny_backbone) -> None:
    dim = 8
    generator = torch.Generator().manual_seed(4)
    state = {
        k: torch.randn(v.shape, generator=generator)
        for k, v in QueryMatcher(dim).state_dict().items()
    }
    state["query_tokens"] = torch.randn(5, dim, generator=generator)  # accepted, unused
    pairs = F.normalize(torch.randn(5, 2, dim, generator=generator), dim=-1)
    keys = matching_keys(pairs, "qformer", initial=state)

    def branch(prefix: str, y: torch.Tensor) -> torch.Tensor:
        value = (y @ state[f"{prefix}.kv_proj.weight"].T + state[f"{prefix}.kv_proj.bias"])[:, dim:]
        return value @ state[f"{prefix}.proj.weight"].T + state[f"{prefix}.proj.bias"]

    fused = torch.cat([branch("cross_attn1", pairs[:, 0]), branch("cross_attn2", pairs[:, 1])], -1)
    expected = fused @ state["fuse_layer.weight"].T + state["fuse_layer.bias"]
    torch.testing.assert_close(keys, expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ConfigError, match="missing"):
        matching_keys(pairs, "qformer", initial={"fuse_layer.weight": state["fuse_layer.weight"]})


# -- 9. vocabularies and captions -------------------------------------------------------------


def test_synthetic_captions_stay_out_of_real_vocabularies() -> None:
    bottle = load_shipped("bottle")
    real = [n for n in list_shipped() if n not in list_shipped("synthetic")]
    expected = derive_vocabularies([*(load_shipped(n) for n in real), bottle])
    assert derived_vocabularies(bottle) == expected
    synth = load_shipped("synth_texture")
    everything = derive_vocabularies([load_shipped(n) for n in list_shipped()])
    assert derived_vocabularies(synth) == everything


def test_a_given_vocabulary_is_matched_case_sensitively(tiny_backbone) -> None:
    caption = load_shipped("bottle")
    used = caption.level3.colors[0]
    vocab = derive_vocabularies([caption])
    words = {"color": [used, used.upper(), "ultramarine"], "texture": list(vocab.textures),
             "shape": list(vocab.shapes), "location": list(vocab.locations)}  # fmt: skip
    detector = FineGrainedAD(tiny_backbone, preset="default", **{**FAST, "seg_epochs": 0})
    detector.fit([_texture(0)], category="bottle", vocabulary=words)
    assert detector.fit_info["vocabulary"] == "given"
    from anomalign.methods.finegrainedad.detector import _vocabulary

    texts = build_prompt_texts(caption, _vocabulary(words), case_sensitive=True)
    assert texts.attribute_handle["color"] == [used.upper(), "ultramarine"]
    loose = build_prompt_texts(caption, _vocabulary(words))
    assert loose.attribute_handle["color"] == ["ultramarine"]
    with pytest.raises(ConfigError, match="no shape"):
        _vocabulary({"color": ["red"], "texture": ["x"], "location": ["center"]})


def test_generic_caption_for_a_part_without_one(tiny_backbone, tmp_path) -> None:
    import anomalign.methods.finegrainedad.detector as module

    module._WARNED_GENERIC.discard("my_part")
    images = [_texture(0), _texture(1)]
    with pytest.warns(GenericCaptionWarning, match="captions build"):
        detector = FineGrainedAD(tiny_backbone, preset="default", **FAST).fit(
            images, category="my_part"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error", GenericCaptionWarning)  # only once
        FineGrainedAD(tiny_backbone, preset="default", **FAST).fit(images, category="my_part")
    assert detector.caption.generic and detector.caption.level2.entities == ("my part",)
    assert detector.fit_info["caption"] == "generic"
    prediction = detector.predict(images[:1], output_size=64)
    assert prediction.info["caption"] == "generic"
    path = detector.save(tmp_path / "x.anomalign")
    assert load_bundle(path).extra["caption_kind"] == "generic"
    restored = load_detector(path, backbone=tiny_backbone)
    np.testing.assert_array_equal(
        restored.predict(images[:1], output_size=64).maps, prediction.maps
    )
    texts = build_prompt_texts(generic_caption("my_part"), derived_vocabularies(detector.caption))
    assert texts.attributes == {} and texts.caption == "my part"
    assert texts.image_handle[0] == "damaged my part"


def test_official_multishot_with_one_shot_is_the_masked_single_image_clustering() -> None:
    """One shot: stage 1, the background choice, stage 2 on the masked distances and
    background tokens taking token 0's label, as :func:`aggregate_regions` does."""
    for seed in range(3):
        generator = torch.Generator().manual_seed(seed)
        tokens = F.normalize(torch.randn(1, 64, 8, generator=generator), dim=-1)
        normal = torch.randn(3, 8, generator=generator) * 3  # unnormalised, as the code
        noise = (torch.rand(1, 64, generator=generator), torch.rand(1, 64, generator=generator))
        official = aggregate_regions_official(tokens, normal, noise)[0]
        norms = tokens[0].norm(dim=-1, keepdim=True) * normal.norm(dim=-1)[None]
        x = tokens[0] @ normal.T / norms
        stage1 = dpc_knn(x, 2, 1, noise=noise[0][0])
        scores = [float(tokens[0][stage1 == label].mean(0) @ normal[-1]) for label in (0, 1)]
        foreground = stage1 != int(torch.tensor(scores).argmax())
        stage2 = dpc_knn(x, 3, 1, foreground, assign="masked", noise=noise[1][0])
        assert official.tolist() == torch.where(foreground, stage2, stage2[0]).tolist()
