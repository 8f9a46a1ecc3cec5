"""Text side of a CLIP backbone: prompt lists and learnable prompt embeddings.

* :meth:`TextEncoder.encode` turns a list of prompts into (optionally normalised)
  embeddings, batched and cached per prompt list, since prompt ensembles are re-used
  for every image of a category.
* :meth:`TextEncoder.encode_embeddings` runs the text tower from token *embeddings*
  (``[SOS] + learnable context + suffix``) with the EOT position taken from the
  original token ids, then ``text_projection``: the building block of FineGrainedAD's
  learnable prompts (finegrainedad.md §2). It keeps the autograd graph.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from open_clip.transformer import text_global_pool
from torch import nn

from anomalign.errors import ConfigError


class TextEncoder:
    """Encode prompts with the text tower of an open_clip ``CLIP`` model."""

    def __init__(
        self, model: nn.Module, tokenizer, batch_size: int = 256, cache_size: int = 64
    ) -> None:
        if not hasattr(model, "token_embedding") or not hasattr(model, "ln_final"):
            raise ConfigError(
                f"{type(model).__name__} has no built-in CLIP text tower; only open_clip CLIP "
                "models (not CustomTextCLIP/CoCa) are supported."
            )
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self._cache: OrderedDict[tuple[str, ...], torch.Tensor] = OrderedDict()
        self._cache_size = cache_size

    @property
    def device(self) -> torch.device:
        return self.model.token_embedding.weight.device

    @property
    def width(self) -> int:
        """Width of the text transformer (the token-embedding dimension)."""
        return int(self.model.token_embedding.weight.shape[1])

    def tokenize(self, prompts: Sequence[str]) -> torch.Tensor:
        """Token ids ``(P, context_length)`` on the model's device."""
        if isinstance(prompts, str):
            raise TypeError("tokenize() takes a list of prompts, not a single string")
        return self.tokenizer(list(prompts)).to(self.device)

    @torch.no_grad()
    def encode(self, prompts: Sequence[str], normalize: bool = True) -> torch.Tensor:
        """Embeddings ``(P, D)`` of ``prompts``: EOT token after ``text_projection``."""
        key = tuple(prompts)
        if not key:
            raise ConfigError("Cannot encode an empty list of prompts.")
        raw = self._cache.get(key)
        if raw is None:
            chunks = [
                self.model.encode_text(self.tokenize(key[start : start + self.batch_size]))
                for start in range(0, len(key), self.batch_size)
            ]
            raw = torch.cat(chunks).float()
            self._cache[key] = raw
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return F.normalize(raw, dim=-1) if normalize else raw.clone()

    def token_embeddings(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Word embeddings ``(P, L, W)`` of token ids, without positional embeddings."""
        return self.model.token_embedding(token_ids)

    def encode_embeddings(
        self, prompt_embeddings: torch.Tensor, token_ids: torch.Tensor, normalize: bool = False
    ) -> torch.Tensor:
        """Encode prompts given as embeddings ``(P, L, W)``; ``token_ids`` ``(P, L)`` locate EOT.

        With ``prompt_embeddings = token_embeddings(token_ids)`` this equals
        ``model.encode_text(token_ids)``. Gradients flow to ``prompt_embeddings``.
        """
        model = self.model
        if prompt_embeddings.shape[:2] != token_ids.shape:
            raise ConfigError(
                f"prompt embeddings of shape {tuple(prompt_embeddings.shape)} do not match token "
                f"ids of shape {tuple(token_ids.shape)}."
            )
        cast_dtype = model.transformer.get_cast_dtype()
        x = prompt_embeddings.to(cast_dtype) + model.positional_embedding.to(cast_dtype)
        x = model.transformer(x, attn_mask=model.attn_mask)
        x = model.ln_final(x)
        x = text_global_pool(
            x, token_ids, model.text_pool_type, eos_token_id=getattr(model, "text_eos_id", None)
        )
        projection = model.text_projection
        if projection is not None:
            x = projection(x) if isinstance(projection, nn.Linear) else x @ projection
        return F.normalize(x, dim=-1) if normalize else x
