"""Dual-path (V-V) image encoder on an open_clip ViT.

Map to the specs:

* anoclip.md §2 "Training-free V-V attention": every selected block gets a second
  attention path ``softmax(v vᵀ · scale) v`` through the block's own out-projection,
  fed with the *original* path's LN'd features (:func:`_dual_attention`); the V-V
  residual stream keeps its residual and skips the FFN (:meth:`DualPathEncoder.forward`).
  The stock ``nn.MultiheadAttention`` weights are reused (``in_proj_weight``,
  ``out_proj``), as style-anchors.md §1 says; no vendored attention class.
* anoclip.md §2 "Outputs": the global token is the original path's CLS after
  ``ln_post`` and ``proj`` (identical to ``encode_image``); the local tokens are the V-V
  path's patch tokens after ``ln_post`` and ``proj``, in the joint embedding space.
* anoclip.md §2 "Pitfall" / finegrainedad.md §4 "Backbone features": intermediate
  original-path patch tokens (e.g. blocks 3 and 8 for FineGrainedAD's patch memory) are
  returned as fresh tensors per block, never aliased and updated in place as in the
  official code. ``aliased=True`` reproduces that official quirk instead
  (:meth:`DualPathEncoder.forward`).

Block numbers are 1-based throughout, as in the papers ("block 3" = ``resblocks[2]``).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from anomalign.backbones.base import ImageTokens
from anomalign.errors import ConfigError


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    batch, tokens, width = x.shape
    return x.view(batch, tokens, heads, width // heads).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    batch, heads, tokens, head_dim = x.shape
    return x.transpose(1, 2).reshape(batch, tokens, heads * head_dim)


def _dual_attention(
    attn: nn.MultiheadAttention, h: torch.Tensor, with_vv: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Original q-k attention and (optionally) V-V attention from one qkv projection."""
    qkv = F.linear(h, attn.in_proj_weight, attn.in_proj_bias)
    q, k, v = (_split_heads(part, attn.num_heads) for part in qkv.chunk(3, dim=-1))
    original = _merge_heads(F.scaled_dot_product_attention(q, k, v))
    original = attn.out_proj(original)
    if not with_vv:
        return original, None
    value_value = _merge_heads(F.scaled_dot_product_attention(v, v, v))
    return original, attn.out_proj(value_value)


class DualPathEncoder(nn.Module):
    """Runs an open_clip ``VisionTransformer`` once and returns global, V-V and block tokens.

    Args:
        visual: ``model.visual`` of an open_clip CLIP with a standard ViT tower.
        vv_depth: how many final blocks carry the V-V path (``None``: all blocks, as the
            official AnoCLIP code; CLIP Surgery's own default is 6). The V-V stream starts
            as a copy of the original stream at the input of its first block.
    """

    def __init__(self, visual: nn.Module, vv_depth: int | None = None) -> None:
        super().__init__()
        self._check_supported(visual)
        self.visual = visual
        self.blocks: nn.ModuleList = visual.transformer.resblocks
        depth = len(self.blocks)
        vv_depth = depth if vv_depth is None else int(vv_depth)
        if not 1 <= vv_depth <= depth:
            raise ConfigError(f"vv_depth must be between 1 and {depth}, got {vv_depth}.")
        self.vv_depth = vv_depth
        self.grid_size: tuple[int, int] = tuple(visual.grid_size)

    @staticmethod
    def _check_supported(visual: nn.Module) -> None:
        transformer = getattr(visual, "transformer", None)
        blocks = getattr(transformer, "resblocks", None)
        if blocks is None or not hasattr(visual, "conv1"):
            raise ConfigError(
                f"The dual-path encoder needs an open_clip ViT image tower; got "
                f"{type(visual).__name__}."
            )
        if getattr(visual, "attn_pool", None) is not None:
            raise ConfigError("Image towers with attentional pooling are not supported.")
        if getattr(visual, "pool_type", "tok") != "tok" or getattr(
            visual, "final_ln_after_pool", False
        ):
            raise ConfigError("The dual-path encoder needs a CLS-token ('tok') pooled ViT.")
        for block in blocks:
            if not isinstance(getattr(block, "attn", None), nn.MultiheadAttention):
                raise ConfigError(
                    f"Block type {type(block).__name__} is not supported: the V-V path "
                    "reuses a standard nn.MultiheadAttention."
                )

    @property
    def num_blocks(self) -> int:
        """Number of transformer blocks in the image tower."""
        return len(self.blocks)

    def _validate_blocks(self, blocks: Iterable[int]) -> tuple[int, ...]:
        chosen = tuple(sorted({int(b) for b in blocks}))
        bad = [b for b in chosen if not 1 <= b <= self.num_blocks]
        if bad:
            raise ConfigError(
                f"Intermediate blocks {bad} are out of range: this tower has blocks "
                f"1..{self.num_blocks}."
            )
        return chosen

    def _project(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = self.visual.ln_post(tokens)
        proj = self.visual.proj
        return tokens @ proj if proj is not None else tokens

    @torch.no_grad()
    def forward(
        self,
        images: torch.Tensor,
        intermediate_blocks: Iterable[int] = (),
        aliased: bool = False,
    ) -> ImageTokens:
        """Encode normalised images ``(B, 3, H, W)``; see :class:`ImageTokens`.

        ``aliased``: return a block's tokens as the official PromptAD/FineGrainedAD hooks
        see them (finegrainedad.md §3.1 "memory-feature aliasing quirk"). Their hook on
        block b keeps a view of the original stream that block b+1 then updates in place
        with its attention residual (``x_ori += x_ori_res``), so the stored feature is
        block b's output plus block b+1's attention residual (not its MLP). That happens
        only when block b+1 continues an existing dual path; otherwise (the last block,
        or a block that starts the path or runs single-path) the clean output stays.
        """
        wanted = self._validate_blocks(intermediate_blocks)
        dtype = self.visual.conv1.weight.dtype
        x_ori = self.visual._embeds(images.to(dtype))
        first_vv = self.num_blocks - self.vv_depth
        x_vv: torch.Tensor | None = None
        intermediates: dict[int, torch.Tensor] = {}
        for index, block in enumerate(self.blocks):
            if index == first_vv:
                x_vv = x_ori
            h = block.ln_1(x_ori)
            o_ori, o_vv = _dual_attention(block.attn, h, with_vv=x_vv is not None)
            x_ori = x_ori + block.ls_1(o_ori)
            if aliased and index in wanted and index > first_vv:
                # block ``index`` (1-based) as the official hook sees it: this block's
                # in-place attention update also lands in the view kept of its output
                intermediates[index] = x_ori[:, 1:].clone()
            x_ori = x_ori + block.ls_2(block.mlp(block.ln_2(x_ori)))
            if o_vv is not None and x_vv is not None:
                x_vv = x_vv + block.ls_1(o_vv)
            if index + 1 in wanted:
                intermediates[index + 1] = x_ori[:, 1:].clone()
        assert x_vv is not None
        global_token = self._project(x_ori[:, 0])
        local_tokens = self._project(x_vv[:, 1:])
        return ImageTokens(global_token, local_tokens, intermediates, self.grid_size)
