"""FineGrainedAD inference math (pure torch); maps code to finegrainedad.md sections.

* §4 VAD: :class:`~anomalign.components.memory.PatchMemory` scores each patch
  token by its cosine distance to the normal memory (blocks 3 and 8 by default).
* §4 PAD: a text gallery of (E+2) pairs ``[t^n, t^a]`` (components, image, background)
  built from the learned prompts (§2, :mod:`prompt_learner`); every token takes the
  pair whose matching key is closest (:meth:`FineGrainedADModel.match`) and scores
  ``softmax(s·[f·t^n, f·t^a])[1]``. Keys are the Q-Former outputs (``official``,
  :class:`QueryMatcher`), the normal features (``default``) or the mean of the pair.
* §4 fusion: ``1/(1/T + 1/V)`` per token (or sum / one branch only for ablations);
  image score ``1/(1/T_img + 1/V_max)`` with T_img from the classification gallery
  on the global token.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from anomalign.components.memory import PatchMemory


class _SingleKeyCrossAttention(nn.Module):
    """The code's ``QCrossAttention`` when each query sees one key: ``proj(W_v y + b_v)``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.q_proj = nn.Linear(dim, dim)  # kept for the code's layout; softmax over one key is 1
        self.kv_proj = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        value = self.kv_proj(y)[..., y.shape[-1] :]
        return self.proj(value)


class QueryMatcher(nn.Module):
    """The code's "Q-Former": ``u = fuse([CA1(t^n); CA2(t^a)])`` with ``fuse`` 2D -> D.

    Its learnable queries attend to a single key each, so the attention weights are 1 and
    each branch reduces to a linear map of its input. It gets no gradient in the code (no
    loss uses it) and stays at its random initialisation; here that initialisation is
    seeded (default PyTorch ``nn.Linear`` init, as in the code), so it is reproducible, but
    its values cannot equal the official run's, which depend on the global RNG state.
    """

    def __init__(
        self, dim: int, seed: int = 111, initial: dict[str, torch.Tensor] | None = None
    ) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.cross_attn1 = _SingleKeyCrossAttention(dim)
            self.cross_attn2 = _SingleKeyCrossAttention(dim)
            self.fuse_layer = nn.Linear(2 * dim, dim)
        if initial:
            self.load_initial(initial)
        self.requires_grad_(False)

    @torch.no_grad()
    def load_initial(self, state: dict[str, torch.Tensor]) -> None:
        """Use given parameters, e.g. the official ``QueryFormer``'s state dict.

        Its names are ours (``cross_attn1.q_proj.weight``, ``cross_attn1.kv_proj.bias``,
        ``cross_attn2.proj.weight``, ``fuse_layer.weight`` ...); ``query_tokens`` is
        accepted and unused (each query attends to one key, so it cancels out).
        """
        from anomalign.errors import ConfigError

        values = {k: torch.as_tensor(v) for k, v in state.items() if k != "query_tokens"}
        own = self.state_dict()
        missing, unknown = sorted(set(own) - set(values)), sorted(set(values) - set(own))
        if missing or unknown:
            raise ConfigError(f"Initial Q-Former parameters: missing {missing}, unknown {unknown}.")
        for name, value in values.items():
            if tuple(value.shape) != tuple(own[name].shape):
                raise ConfigError(
                    f"Initial Q-Former {name} has shape {tuple(value.shape)}; expected "
                    f"{tuple(own[name].shape)}."
                )
        self.load_state_dict({k: v.float() for k, v in values.items()})

    @torch.no_grad()
    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        """``(P, 2, D)`` gallery pairs -> ``(P, D)`` matching keys."""
        a = self.cross_attn1(pairs[:, 0])
        b = self.cross_attn2(pairs[:, 1])
        return self.fuse_layer(torch.cat([a, b], dim=-1))


def matching_keys(
    pairs: torch.Tensor, mode: str, seed: int = 111, initial: dict | None = None
) -> torch.Tensor:
    """Keys a token is matched on: Q-Former output, t^n, or the mean of t^n and t^a.

    ``initial``: the Q-Former's parameters to use instead of the seeded init.
    """
    if mode == "qformer":
        matcher = QueryMatcher(pairs.shape[-1], seed, initial).to(pairs.device)
        return matcher(pairs.float())
    if mode == "normal":
        return pairs[:, 0].clone()
    return F.normalize(pairs.mean(1), dim=-1)


def harmonic(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``1/(1/a + 1/b)`` (the code's fusion; zero if either is zero)."""
    return a * b / (a + b).clamp_min(torch.finfo(a.dtype).tiny)


class FineGrainedADModel(nn.Module):
    """Fitted state used at inference: galleries, matching keys, logit scale, memory.

    Args:
        seg_pairs: ``(E+2, 2, D)`` segmentation gallery; seg_keys ``(E+2, D)``.
        cls_pairs, cls_keys: the same for the classification model.
        scale: logit scale ``s``.
        memory: the VAD memory.
        fusion: "harmonic", "sum", "textual" or "visual".
    """

    def __init__(
        self,
        seg_pairs: torch.Tensor,
        seg_keys: torch.Tensor,
        cls_pairs: torch.Tensor,
        cls_keys: torch.Tensor,
        scale: float,
        memory: PatchMemory,
        fusion: str = "harmonic",
    ) -> None:
        super().__init__()
        self.register_buffer("seg_pairs", seg_pairs.float())
        self.register_buffer("seg_keys", seg_keys.float())
        self.register_buffer("cls_pairs", cls_pairs.float())
        self.register_buffer("cls_keys", cls_keys.float())
        self.scale = float(scale)
        self.memory = memory
        self.fusion = fusion

    @staticmethod
    def match(tokens: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """Index of the closest key (cosine) for every token ``(..., D)``."""
        return (F.normalize(tokens, dim=-1) @ F.normalize(keys, dim=-1).T).argmax(dim=-1)

    def textual(self, tokens: torch.Tensor, pairs: torch.Tensor, keys: torch.Tensor):
        """PAD score of normalised tokens ``(..., D)``: abnormal probability of the matched pair."""
        chosen = pairs[self.match(tokens, keys)]  # (..., 2, D)
        logits = (chosen @ tokens[..., None])[..., 0] * self.scale
        return logits.softmax(dim=-1)[..., 1]

    def branches(self, tokens) -> dict[str, torch.Tensor]:
        """Per-token T and V maps ``(B, N)`` and the global textual score ``(B,)``."""
        local = F.normalize(tokens.local_tokens.float(), dim=-1)
        glob = F.normalize(tokens.global_token.float(), dim=-1)
        return {
            "textual": self.textual(local, self.seg_pairs, self.seg_keys),
            "visual": self.memory.score(tokens.intermediates),
            "textual_image": self.textual(glob, self.cls_pairs, self.cls_keys),
        }

    def fuse(self, textual: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        """Combine T and V according to ``fusion`` (also used for image scores)."""
        if self.fusion == "harmonic":
            return harmonic(textual, visual)
        if self.fusion == "sum":
            return textual + visual
        if self.fusion == "textual":
            return textual
        return visual
