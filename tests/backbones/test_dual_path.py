"""The dual-path encoder against open_clip itself and an independent naive V-V loop."""

from __future__ import annotations

import math

import pytest
import torch

from anomalign.backbones import Backbone, DualPathEncoder
from anomalign.errors import ConfigError


def _images(backbone: Backbone, batch: int = 2, seed: int = 0) -> torch.Tensor:
    height, width = backbone.image_size
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, height, width, generator=generator)


def _naive_vv_local_tokens(backbone: Backbone, images: torch.Tensor) -> torch.Tensor:
    """Spec anoclip.md §2 written out per head with explicit softmax, no shared code."""
    visual = backbone.model.visual
    x = visual.conv1(images).flatten(2).transpose(1, 2)
    cls = visual.class_embedding.expand(x.shape[0], 1, -1)
    x = visual.ln_pre(torch.cat([cls, x], dim=1) + visual.positional_embedding)
    x_ori, x_vv = x, x.clone()
    for block in visual.transformer.resblocks:
        attn = block.attn
        heads, width = attn.num_heads, x.shape[-1]
        head_dim = width // heads
        h = block.ln_1(x_ori)
        w_q, w_k, w_v = attn.in_proj_weight.split(width)
        b_q, b_k, b_v = attn.in_proj_bias.split(width)
        q, k, v = h @ w_q.T + b_q, h @ w_k.T + b_k, h @ w_v.T + b_v
        ori_heads, vv_heads = [], []
        for head in range(heads):
            sl = slice(head * head_dim, (head + 1) * head_dim)
            scale = 1.0 / math.sqrt(head_dim)
            a_ori = torch.softmax(q[..., sl] @ k[..., sl].transpose(1, 2) * scale, dim=-1)
            a_vv = torch.softmax(v[..., sl] @ v[..., sl].transpose(1, 2) * scale, dim=-1)
            ori_heads.append(a_ori @ v[..., sl])
            vv_heads.append(a_vv @ v[..., sl])
        o_ori = attn.out_proj(torch.cat(ori_heads, dim=-1))
        o_vv = attn.out_proj(torch.cat(vv_heads, dim=-1))
        x_ori = x_ori + o_ori
        x_ori = x_ori + block.mlp(block.ln_2(x_ori))
        x_vv = x_vv + o_vv
    return visual.ln_post(x_vv[:, 1:]) @ visual.proj


@torch.no_grad()
def test_global_token_equals_open_clip_encode_image(tiny_backbone: Backbone) -> None:
    images = _images(tiny_backbone)
    tokens = tiny_backbone.encoder()(images)
    expected = tiny_backbone.model.encode_image(images)
    torch.testing.assert_close(tokens.global_token, expected, atol=1e-5, rtol=0)


@torch.no_grad()
def test_vv_tokens_equal_naive_per_head_loop(tiny_backbone: Backbone) -> None:
    images = _images(tiny_backbone, seed=1)
    tokens = tiny_backbone.encoder()(images)
    expected = _naive_vv_local_tokens(tiny_backbone, images)
    torch.testing.assert_close(tokens.local_tokens, expected, atol=1e-5, rtol=1e-5)
    # The V-V path must differ from the original path's patch tokens.
    visual = tiny_backbone.model.visual
    visual.output_tokens = True
    try:
        _, original_tokens = visual(images)
    finally:
        visual.output_tokens = False
    assert not torch.allclose(tokens.local_tokens, original_tokens @ visual.proj, atol=1e-3)


def test_intermediate_blocks_equal_forward_hooks(tiny_backbone: Backbone) -> None:
    images = _images(tiny_backbone, seed=2)
    seen: dict[int, torch.Tensor] = {}
    blocks = tiny_backbone.model.visual.transformer.resblocks
    handles = [
        block.register_forward_hook(
            lambda _m, _i, out, number=number: seen.__setitem__(number, out.detach().clone())
        )
        for number, block in enumerate(blocks, start=1)
    ]
    try:
        with torch.no_grad():
            tiny_backbone.model.encode_image(images)
    finally:
        for handle in handles:
            handle.remove()
    tokens = tiny_backbone.encoder()(images, intermediate_blocks=[1, 2])
    assert sorted(tokens.intermediates) == [1, 2]
    for number in (1, 2):
        torch.testing.assert_close(
            tokens.intermediates[number], seen[number][:, 1:], atol=1e-5, rtol=0
        )
    # Not aliased: block 1's tokens differ from block 2's.
    assert not torch.allclose(tokens.intermediates[1], tokens.intermediates[2])


def test_batch_equals_loop_of_singles(tiny_backbone: Backbone) -> None:
    images = _images(tiny_backbone, batch=3, seed=3)
    batch = tiny_backbone.encoder()(images, intermediate_blocks=[1])
    for index in range(3):
        single = tiny_backbone.encoder()(images[index : index + 1], intermediate_blocks=[1])
        torch.testing.assert_close(
            single.local_tokens[0], batch.local_tokens[index], atol=1e-5, rtol=0
        )
        torch.testing.assert_close(
            single.global_token[0], batch.global_token[index], atol=1e-5, rtol=0
        )


def test_partial_vv_depth_starts_from_original_stream(tiny_backbone: Backbone) -> None:
    images = _images(tiny_backbone, seed=4)
    full = tiny_backbone.encoder(vv_depth=None)(images)
    last_only = tiny_backbone.encoder(vv_depth=1)(images)
    torch.testing.assert_close(full.global_token, last_only.global_token)
    assert not torch.allclose(full.local_tokens, last_only.local_tokens, atol=1e-4)
    with pytest.raises(ConfigError, match="vv_depth"):
        DualPathEncoder(tiny_backbone.model.visual, vv_depth=5)


def test_out_of_range_block_is_rejected(tiny_backbone: Backbone) -> None:
    with pytest.raises(ConfigError, match=r"1\.\.2"):
        tiny_backbone.encoder()(_images(tiny_backbone, batch=1), intermediate_blocks=[3])


def test_paper_backbone_shapes(paper_backbone: Backbone) -> None:
    assert paper_backbone.image_size == (240, 240)
    images = _images(paper_backbone, batch=1)
    tokens = paper_backbone.encoder()(images, intermediate_blocks=[3, 8])
    assert tokens.grid_size == (15, 15)
    assert tokens.global_token.shape == (1, 640)
    assert tokens.local_tokens.shape == (1, 225, 640)
    assert tokens.intermediates[3].shape == (1, 225, 896)
    assert tokens.intermediates[8].shape == (1, 225, 896)
    with torch.no_grad():
        expected = paper_backbone.model.encode_image(images)
    torch.testing.assert_close(tokens.global_token, expected, atol=1e-5, rtol=1e-5)


def test_bf16_precision_runs(tiny_backbone: Backbone) -> None:
    import copy

    model = copy.deepcopy(tiny_backbone.model).to(torch.bfloat16)
    encoder = DualPathEncoder(model.visual)
    tokens = encoder(_images(tiny_backbone, batch=1))
    assert tokens.local_tokens.dtype == torch.bfloat16
    reference = tiny_backbone.encoder()(_images(tiny_backbone, batch=1))
    torch.testing.assert_close(
        tokens.local_tokens.float(), reference.local_tokens, atol=0.1, rtol=0.1
    )
