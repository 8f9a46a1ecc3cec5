"""The text encoder: cached prompt lists, the embedding-level path, causal truncation."""

from __future__ import annotations

import copy

import pytest
import torch

from anomalign.backbones import Backbone, TextEncoder
from anomalign.backbones.text import LENGTH_MULTIPLE

#: Prompts of different lengths (EOT at 6 .. 37): several length groups at once.
MIXED_PROMPTS = [
    "a photo of a flawless bottle",
    "a damaged screw with a scratch",
    "a cropped industrial photo of a metal nut with a small bent edge near the thread",
    "X",
    "a close-up photo of the bottom left corner of a printed circuit board with a missing "
    "capacitor, a scratched trace and a crooked integrated circuit near the connector",
]


def _full_length(backbone: Backbone, prompts: list[str]) -> torch.Tensor:
    with torch.no_grad():
        return backbone.model.encode_text(backbone.text.tokenize(prompts))


def test_embedding_level_encoder_equals_encode_text(tiny_backbone: Backbone) -> None:
    text = tiny_backbone.text
    ids = text.tokenize(["a photo of a flawless bottle", "a damaged screw with a scratch"])
    embeddings = text.token_embeddings(ids)
    got = text.encode_embeddings(embeddings, ids)
    with torch.no_grad():
        expected = tiny_backbone.model.encode_text(ids)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_embedding_level_encoder_passes_gradients_to_context(tiny_backbone: Backbone) -> None:
    text = tiny_backbone.text
    ids = text.tokenize(["X X X X bottle."])
    base = text.token_embeddings(ids).detach()
    context = torch.zeros(1, 4, text.width, requires_grad=True)
    prompt = torch.cat([base[:, :1], base[:, 1:5] + context, base[:, 5:]], dim=1)
    text.encode_embeddings(prompt, ids).sum().backward()
    assert context.grad is not None and context.grad.abs().sum() > 0


def test_encode_is_normalised_cached_and_matches_open_clip(tiny_backbone: Backbone) -> None:
    prompts = ["a photo of a cat", "a photo of a dog", "an industrial photo of a screw"]
    text = tiny_backbone.text
    raw = text.encode(prompts, normalize=False)
    with torch.no_grad():
        expected = tiny_backbone.model.encode_text(text.tokenize(prompts))
    torch.testing.assert_close(raw, expected, atol=1e-5, rtol=0)
    normed = text.encode(prompts)
    torch.testing.assert_close(normed.norm(dim=-1), torch.ones(3))
    raw[:] = 0  # callers get copies: the cache must not be corrupted
    torch.testing.assert_close(text.encode(prompts, normalize=False), expected, atol=1e-5, rtol=0)


def test_batching_does_not_change_embeddings(tiny_backbone: Backbone) -> None:
    prompts = [f"a photo of object number {i}" for i in range(7)]
    text = tiny_backbone.text
    whole = text.encode(prompts, disk_cache=False)
    original = text.batch_size
    text.batch_size = 3
    try:
        text._cache.clear()
        chunked = text.encode(prompts, disk_cache=False)
    finally:
        text.batch_size = original
    torch.testing.assert_close(whole, chunked, atol=1e-5, rtol=0)


# -- causal truncation ---------------------------------------------------------------------


@pytest.mark.parametrize("backbone_name", ["tiny_backbone", "paper_backbone"])
def test_truncated_encodings_equal_full_length_bit_for_bit(
    backbone_name: str, request: pytest.FixtureRequest
) -> None:
    backbone: Backbone = request.getfixturevalue(backbone_name)
    text = backbone.text
    assert text.is_causal
    ids = text.tokenize(MIXED_PROMPTS)
    lengths = text.row_lengths(ids)
    assert len(lengths.unique()) >= 3 and text.sequence_length(ids) < ids.shape[1]
    expected = _full_length(backbone, MIXED_PROMPTS)
    got = text.encode(MIXED_PROMPTS, normalize=False, disk_cache=False)
    assert torch.equal(got, expected)
    with torch.no_grad():
        embedded = text.encode_embeddings(text.token_embeddings(ids), ids)
        full = text.encode_embeddings(text.token_embeddings(ids), ids, truncate=False)
    assert torch.equal(embedded, expected) and torch.equal(full, expected)


def test_row_lengths_cover_eot_in_whole_lanes(tiny_backbone: Backbone) -> None:
    text = tiny_backbone.text
    ids = text.tokenize(MIXED_PROMPTS)
    eot = ids.argmax(dim=-1).cpu()
    lengths = text.row_lengths(ids)
    assert bool((lengths > eot).all())
    assert bool((lengths % LENGTH_MULTIPLE == 0).all())
    assert bool((lengths - eot <= LENGTH_MULTIPLE).all())
    assert text.sequence_length(ids) == int(lengths.max())
    assert bool((text.row_lengths(ids, truncate=False) == ids.shape[1]).all())


def test_truncated_gradients_equal_full_length_gradients(tiny_backbone: Backbone) -> None:
    text = tiny_backbone.text
    ids = text.tokenize([f"X X X X {p}." for p in MIXED_PROMPTS])
    base = text.token_embeddings(ids).detach()
    weights = torch.linspace(-1, 1, len(MIXED_PROMPTS) * base.shape[0])
    grads, outputs = [], []
    for truncate in (True, False):
        prompt = base.clone().requires_grad_(True)
        out = text.encode_embeddings(prompt, ids, truncate=truncate)
        (out * weights.view(-1, 1)[: out.shape[0]]).sum().backward()
        grads.append(prompt.grad)
        outputs.append(out.detach())
    assert torch.equal(outputs[0], outputs[1])
    assert torch.equal(grads[0], grads[1])
    after_eot = torch.arange(ids.shape[1])[None, :] > ids.argmax(dim=-1).cpu()[:, None]
    assert float(grads[0][after_eot].abs().max()) == 0.0


def test_non_causal_tower_runs_at_full_length(tiny_backbone: Backbone) -> None:
    model = copy.deepcopy(tiny_backbone.model)
    model.attn_mask = None  # a bidirectional tower: every position matters
    text = TextEncoder(model, tiny_backbone.tokenizer, prompt_cache=False)
    assert not text.is_causal
    ids = text.tokenize(MIXED_PROMPTS)
    assert text.sequence_length(ids) == ids.shape[1]
    with torch.no_grad():
        expected = model.encode_text(ids)
    assert torch.equal(text.encode(MIXED_PROMPTS, normalize=False), expected)
    # Cutting it anyway would change the result: the fallback is needed.
    causal = tiny_backbone.text
    assert not torch.equal(expected, causal.encode(MIXED_PROMPTS, normalize=False))


def test_towers_pooling_after_eot_run_at_full_length(tiny_backbone: Backbone) -> None:
    model = copy.deepcopy(tiny_backbone.model)
    model.text_pool_type = "last"
    text = TextEncoder(model, tiny_backbone.tokenizer, prompt_cache=False)
    assert not text.is_causal
    assert text.sequence_length(text.tokenize(["a photo"])) == model.positional_embedding.shape[0]


def test_grouped_lengths_are_close_to_full_length(tiny_backbone: Backbone) -> None:
    text = TextEncoder(
        tiny_backbone.model, tiny_backbone.tokenizer, prompt_cache=False, group_lengths=True
    )
    ids = text.tokenize([f"X X X X {p}." for p in MIXED_PROMPTS])
    base = text.token_embeddings(ids).detach()
    grads, outputs = [], []
    for truncate in (True, False):
        prompt = base.clone().requires_grad_(True)
        out = text.encode_embeddings(prompt, ids, truncate=truncate)
        out.square().sum().backward()
        grads.append(prompt.grad)
        outputs.append(out.detach())
    for grouped, full in ((outputs[0], outputs[1]), (grads[0], grads[1])):
        assert float((grouped - full).abs().max()) <= 1e-6 * float(full.abs().max())
