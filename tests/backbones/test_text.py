"""The text encoder: cached prompt lists and the embedding-level path."""

from __future__ import annotations

import torch

from anomalign.backbones import Backbone


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
    whole = text.encode(prompts)
    original = text.batch_size
    text.batch_size = 3
    try:
        text._cache.clear()
        chunked = text.encode(prompts)
    finally:
        text.batch_size = original
    torch.testing.assert_close(whole, chunked, atol=1e-5, rtol=0)
