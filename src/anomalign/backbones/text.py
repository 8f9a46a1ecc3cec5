"""Text side of a CLIP backbone: prompt lists and learnable prompt embeddings.

* :meth:`TextEncoder.encode` turns a list of prompts into (optionally normalised)
  embeddings, batched and cached per prompt list, in memory and on disk
  (:mod:`anomalign.backbones.prompt_cache`), since prompt ensembles are re-used for every
  image of a category and every category of a backbone.
* :meth:`TextEncoder.encode_embeddings` runs the text tower from token *embeddings*
  (``[SOS] + learnable context + suffix``) with the EOT position taken from the
  original token ids, then ``text_projection``: the building block of FineGrainedAD's
  learnable prompts (finegrainedad.md §2). It keeps the autograd graph.

Both run a batch of prompts on its first ``max_eot + 1`` positions only (rounded up to
16) when the tower is causal and pools at the EOT token, as CLIP's does: later positions
cannot change the pooled feature, so the result is the same, bit for bit, while the cost
drops with the sequence length (77 -> 16 for AnoCLIP's prompts, ~48 for FineGrainedAD's).
Towers that are not causal run at full length.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property

import torch
import torch.nn.functional as F
from open_clip.transformer import text_global_pool
from torch import nn

from anomalign.backbones.prompt_cache import PromptCache, open_prompt_cache
from anomalign.errors import ConfigError

logger = logging.getLogger(__name__)

#: Pool types whose pooled position is at or before the EOT token.
EOT_POOLS = ("argmax", "eos", "first")
#: Truncated lengths are rounded up to a multiple of this: attention kernels reduce over
#: the key axis in SIMD lanes of up to 16 floats, and a whole number of lanes keeps the
#: summation order (hence every bit) of the full-length run.
LENGTH_MULTIPLE = 16
#: Parameters and buffers of an open_clip ``CLIP`` model that form its text tower.
TEXT_TOWER_PREFIXES = (
    "token_embedding.",
    "positional_embedding",
    "transformer.",
    "ln_final.",
    "text_projection",
    "attn_mask",
)


def _is_causal_mask(mask: torch.Tensor | None, length: int) -> bool:
    """True when ``mask`` is the additive causal mask: ``-inf`` strictly above the diagonal."""
    if mask is None or mask.dim() != 2 or tuple(mask.shape) != (length, length):
        return False
    mask = mask.detach().float().cpu()
    upper = torch.ones(length, length, dtype=torch.bool).triu(1)
    return bool(torch.isneginf(mask[upper]).all()) and bool((mask[~upper] == 0).all())


#: Strings tokenised to fingerprint a tokenizer (case, punctuation, unicode, overflow).
TOKENIZER_PROBES = (
    "a photo of a flawless bottle.",
    "A Close-Up Photo of a DAMAGED metal_nut, with 2 scratches; and a crack!",
    "naïve café – «déjà vu» 日本 🙂",
    " ".join(["long"] * 100),
)


def _tokenizer_fingerprint(tokenizer) -> str:
    """Class, settings and the token ids of :data:`TOKENIZER_PROBES`."""
    details = tuple(
        repr(getattr(tokenizer, attribute, None))
        for attribute in ("context_length", "vocab_size", "sot_token_id", "eot_token_id")
    )
    functions = tuple(
        getattr(getattr(tokenizer, attribute, None), "__qualname__", None)
        for attribute in ("clean_fn", "reduction_fn")
    )
    ids = torch.as_tensor(tokenizer(list(TOKENIZER_PROBES))).to(torch.int64).contiguous()
    digest = hashlib.sha256(repr((type(tokenizer).__qualname__, details, functions)).encode())
    digest.update(f"{tuple(ids.shape)}".encode())
    digest.update(memoryview(ids.numpy()).cast("B"))
    return digest.hexdigest()


def _tensor_digest(name: str, tensor: torch.Tensor) -> bytes:
    data = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
    digest = hashlib.sha256(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
    digest.update(memoryview(data))
    return digest.digest()


class TextEncoder:
    """Encode prompts with the text tower of an open_clip ``CLIP`` model.

    Args:
        model: the CLIP model (frozen).
        tokenizer: its open_clip tokenizer.
        batch_size: prompts per tower call in :meth:`encode`.
        cache_size: prompt lists kept in memory.
        name: architecture name, part of the disk-cache identity.
        prompt_cache: the on-disk cache of :meth:`encode`: a :class:`PromptCache`, False
            (off) or None (the default cache unless ``ANOMALIGN_PROMPT_CACHE=0``).
        truncate: run causal towers on ``[:, :max_eot + 1]`` (same result, faster).
        group_lengths: with ``truncate``, also run rows of different lengths in separate
            calls (~1.6x fewer positions for FineGrainedAD's prompts). Off by default: a
            row's result then depends on its group's size in the last bits (the matmul
            kernels' blocking), so it is equal to the full-length one to ~1e-7 relative,
            not bit for bit.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer,
        batch_size: int = 256,
        cache_size: int = 64,
        *,
        name: str | None = None,
        prompt_cache: PromptCache | bool | None = None,
        truncate: bool = True,
        group_lengths: bool = False,
    ) -> None:
        if not hasattr(model, "token_embedding") or not hasattr(model, "ln_final"):
            raise ConfigError(
                f"{type(model).__name__} has no built-in CLIP text tower; only open_clip CLIP "
                "models (not CustomTextCLIP/CoCa) are supported."
            )
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.name = name or type(model).__name__
        self.prompt_cache = prompt_cache
        self.truncate = truncate
        self.group_lengths = group_lengths
        self._cache: OrderedDict[tuple[str, ...], torch.Tensor] = OrderedDict()
        self._cache_size = cache_size

    @property
    def device(self) -> torch.device:
        return self.model.token_embedding.weight.device

    @property
    def width(self) -> int:
        """Width of the text transformer (the token-embedding dimension)."""
        return int(self.model.token_embedding.weight.shape[1])

    @property
    def context_length(self) -> int:
        return int(self.model.positional_embedding.shape[0])

    @cached_property
    def is_causal(self) -> bool:
        """Whether the tower is causal and pools at or before EOT (truncation is exact)."""
        pool = getattr(self.model, "text_pool_type", "argmax")
        mask = getattr(self.model, "attn_mask", None)
        return pool in EOT_POOLS and _is_causal_mask(mask, self.context_length)

    def tokenize(self, prompts: Sequence[str]) -> torch.Tensor:
        """Token ids ``(P, context_length)`` on the model's device."""
        if isinstance(prompts, str):
            raise TypeError("tokenize() takes a list of prompts, not a single string")
        return self.tokenizer(list(prompts)).to(self.device)

    def pooled_positions(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Position ``(P,)`` whose output the tower pools (EOT for CLIP)."""
        pool = getattr(self.model, "text_pool_type", "argmax")
        if pool == "argmax":
            return token_ids.argmax(dim=-1)
        if pool == "eos":
            eos = self.model.text_eos_id
            return (token_ids == eos).int().argmax(dim=-1)
        if pool == "first":
            return torch.zeros(token_ids.shape[0], dtype=torch.long, device=token_ids.device)
        return torch.full((token_ids.shape[0],), token_ids.shape[1] - 1, device=token_ids.device)

    def sequence_length(self, token_ids: torch.Tensor, truncate: bool | None = None) -> int:
        """Positions the tower must run on for all of ``token_ids``: the longest row length."""
        return int(self.row_lengths(token_ids, truncate).max()) if len(token_ids) else 0

    def row_lengths(self, token_ids: torch.Tensor, truncate: bool | None = None) -> torch.Tensor:
        """Positions each row needs ``(P,)``: ``eot + 1`` rounded up to :data:`LENGTH_MULTIPLE`
        (capped at the context) for causal towers, else the full length."""
        full = int(token_ids.shape[1])
        if not (self.truncate if truncate is None else truncate) or not self.is_causal:
            return torch.full((token_ids.shape[0],), full, dtype=torch.long)
        needed = self.pooled_positions(token_ids).cpu() + 1
        rounded = (needed + LENGTH_MULTIPLE - 1) // LENGTH_MULTIPLE * LENGTH_MULTIPLE
        return rounded.clamp(max=full)

    # -- the tower -----------------------------------------------------------------------

    def _pooled(self, x: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
        """Transformer, final norm and pooling of embeddings ``(P, n, W)``, ``n`` <= context."""
        model = self.model
        n = x.shape[1]
        cast_dtype = model.transformer.get_cast_dtype()
        x = x.to(cast_dtype) + model.positional_embedding[:n].to(cast_dtype)
        mask = model.attn_mask
        if mask is not None and n != mask.shape[0]:
            mask = mask[:n, :n]
        x = model.transformer(x, attn_mask=mask)
        x = model.ln_final(x)
        return text_global_pool(
            x, token_ids, model.text_pool_type, eos_token_id=getattr(model, "text_eos_id", None)
        )

    def _tower(
        self, embeddings: torch.Tensor, token_ids: torch.Tensor, lengths: torch.Tensor
    ) -> torch.Tensor:
        """Pooled, projected features of the rows; ``embeddings`` may be cut to
        ``lengths.max()`` positions.

        One tower call on the longest row length, or with :attr:`group_lengths` one call
        per group of rows of equal length (fewer positions; the projection still runs
        once, on all rows in their original order).
        """
        groups = lengths.unique()
        if not self.group_lengths or len(groups) == 1:
            n = int(groups.max())
            pooled = self._pooled(embeddings[:, :n], token_ids[:, :n])
        else:
            parts, rows = [], []
            for n in groups.tolist():
                index = (lengths == n).nonzero().squeeze(1).to(embeddings.device)
                parts.append(self._pooled(embeddings[index, :n], token_ids[index, :n]))
                rows.append(index)
            order = torch.cat(rows)
            pooled = torch.cat(parts)[order.argsort()]
        projection = self.model.text_projection
        if projection is not None:
            if isinstance(projection, nn.Linear):
                return projection(pooled)
            return pooled @ projection
        return pooled

    def token_embeddings(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Word embeddings ``(P, L, W)`` of token ids, without positional embeddings."""
        return self.model.token_embedding(token_ids)

    def encode_embeddings(
        self,
        prompt_embeddings: torch.Tensor,
        token_ids: torch.Tensor,
        normalize: bool = False,
        truncate: bool | None = None,
    ) -> torch.Tensor:
        """Encode prompts given as embeddings ``(P, L, W)``; ``token_ids`` ``(P, L)`` locate EOT.

        With ``prompt_embeddings = token_embeddings(token_ids)`` this equals
        ``model.encode_text(token_ids)``, bit for bit. Gradients flow to
        ``prompt_embeddings`` (they are zero after each row's EOT, as at full length).
        ``truncate=None`` follows :attr:`truncate`; False runs every row at full length.
        """
        if prompt_embeddings.shape[:2] != token_ids.shape:
            raise ConfigError(
                f"prompt embeddings of shape {tuple(prompt_embeddings.shape)} do not match token "
                f"ids of shape {tuple(token_ids.shape)}."
            )
        x = self._tower(prompt_embeddings, token_ids, self.row_lengths(token_ids, truncate))
        return F.normalize(x, dim=-1) if normalize else x

    # -- prompt lists --------------------------------------------------------------------

    @cached_property
    def identity(self) -> str:
        """Hex digest naming this text tower and tokenizer: architecture, structure, dtype,
        weights, tokenizer and context.

        Computed once (the backbone is frozen): the SHA-256 of every text-tower parameter
        and buffer, of the modules' structure (activation, norms), pooling, the tokenizer
        (settings and the ids of :data:`TOKENIZER_PROBES`) and the device type (CPU and
        GPU kernels round differently).
        """
        model = self.model
        named = [
            (name, tensor)
            for name, tensor in [*model.named_parameters(), *model.named_buffers()]
            if name.startswith(TEXT_TOWER_PREFIXES)
        ]
        named.sort(key=lambda item: item[0])
        with ThreadPoolExecutor(max_workers=4) as pool:  # hashlib releases the GIL
            digests = list(pool.map(lambda item: _tensor_digest(*item), named))
        total = hashlib.sha256()
        structure = (
            self.name,
            type(model).__name__,
            repr(model.transformer),
            repr(model.ln_final),
            getattr(model, "text_pool_type", None),
            getattr(model, "text_eos_id", None),
            str(model.transformer.get_cast_dtype()),
            _tokenizer_fingerprint(self.tokenizer),
            self.context_length,
            self.device.type,
        )
        total.update(repr(structure).encode())
        for digest in digests:
            total.update(digest)
        return total.hexdigest()

    def _disk_cache(self, use: bool | None) -> PromptCache | None:
        if use is False:
            return None
        if isinstance(self.prompt_cache, PromptCache):
            return self.prompt_cache
        if self.prompt_cache is False:
            return None
        return open_prompt_cache(force=bool(use))

    @torch.no_grad()
    def _encode_uncached(self, token_ids: torch.Tensor) -> torch.Tensor:
        chunks = []
        for start in range(0, token_ids.shape[0], self.batch_size):
            ids = token_ids[start : start + self.batch_size]
            lengths = self.row_lengths(ids)
            embeddings = self.token_embeddings(ids[:, : int(lengths.max())])
            chunks.append(self._tower(embeddings, ids, lengths))
        return torch.cat(chunks).float()

    @torch.no_grad()
    def encode(
        self, prompts: Sequence[str], normalize: bool = True, disk_cache: bool | None = None
    ) -> torch.Tensor:
        """Embeddings ``(P, D)`` of ``prompts``: EOT token after ``text_projection``.

        Results are cached in memory and, unless ``disk_cache=False`` (or the encoder's
        ``prompt_cache`` is off), on disk keyed by :attr:`identity` and the exact prompts
        (a hit needs neither the tokenizer nor the tower); a cached result is the very
        tensor computed the first time.
        """
        key = tuple(prompts)
        if not key:
            raise ConfigError("Cannot encode an empty list of prompts.")
        raw = self._cache.get(key)
        if raw is None:
            raw = self._encode_cached(key, disk_cache)
            self._cache[key] = raw
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return F.normalize(raw, dim=-1) if normalize else raw.clone()

    def _encode_cached(self, prompts: tuple[str, ...], use: bool | None) -> torch.Tensor:
        cache = self._disk_cache(use)
        if cache is None:
            return self._encode_uncached(self.tokenize(prompts))
        entry = cache.key(self.identity, prompts)
        found = cache.get(entry, rows=len(prompts))
        if found is not None:
            return found.to(self.device)
        raw = self._encode_uncached(self.tokenize(prompts))
        cache.put(entry, raw, architecture=self.name, prompts=len(prompts))
        return raw
