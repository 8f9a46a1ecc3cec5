"""AnoCLIP+'s test-time adapter and its loss (anoclip.md §4).

* :class:`TextAdapter`: ``0.5 z + 0.5 tanh(A(z/|z|)) @ T_all`` with ``A: D -> 2P`` on the
  basis of all individually normalised prompt embeddings (normals first).
* :class:`LinearAdapter`: ``0.5 z + 0.5 B(z/|z|)`` with ``B: D -> D``.
The residual uses the un-normalised token. :func:`tta_loss` is the official loss:
entropy of the clean prediction + ``w`` x (-log P_clean(normal) - log P_noisy(abnormal)).

Each adapter holds ``count`` independent copies of its linear layer (weights
``(count, out, in)``), one per image, applied to tokens ``(count, ..., D)``: adapting a
batch of images at once is then exactly the same as adapting them one by one, because
AdamW works element-wise and each copy only sees its own image's loss.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class _BatchedLinear(nn.Module):
    """``count`` independent ``nn.Linear(in_features, out_features)`` layers."""

    def __init__(self, in_features: int, out_features: int, count: int = 1) -> None:
        super().__init__()
        self.in_features, self.out_features, self.count = in_features, out_features, count
        self.weight = nn.Parameter(torch.empty(count, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(count, out_features))
        self.reset(None)

    @torch.no_grad()
    def reset(self, generator: torch.Generator | None) -> None:
        """PyTorch's default ``nn.Linear`` init drawn once from ``generator`` (on the
        generator's device, so CPU and CUDA get the same weights) and given to every copy."""
        device = generator.device if generator is not None else self.weight.device
        weight = torch.empty(self.out_features, self.in_features, device=device)
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
        bound = 1.0 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0
        bias = torch.empty(self.out_features, device=device)
        nn.init.uniform_(bias, -bound, bound, generator=generator)
        self.weight.copy_(weight.expand_as(self.weight))
        self.bias.copy_(bias.expand_as(self.bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(count, ..., in)`` -> ``(count, ..., out)``."""
        flat = x.reshape(self.count, -1, self.in_features)
        out = torch.baddbmm(self.bias[:, None], flat, self.weight.transpose(1, 2))
        return out.reshape(*x.shape[:-1], self.out_features)


class TextAdapter(nn.Module):
    """Adapter whose output lies in the span of the prompt embeddings ``basis`` (P, D)."""

    def __init__(self, basis: torch.Tensor, count: int = 1) -> None:
        super().__init__()
        self.register_buffer("basis", basis.detach().clone(), persistent=False)
        self.linear = _BatchedLinear(basis.shape[1], basis.shape[0], count)

    def reset(self, generator: torch.Generator | None = None) -> None:
        self.linear.reset(generator)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        affinity = torch.tanh(self.linear(F.normalize(tokens, dim=-1)))
        return 0.5 * tokens + 0.5 * affinity @ self.basis


class LinearAdapter(nn.Module):
    """Adapter ``0.5 z + 0.5 B(z/|z|)`` (the official VisA script's choice)."""

    def __init__(self, dim: int, count: int = 1) -> None:
        super().__init__()
        self.linear = _BatchedLinear(dim, dim, count)

    def reset(self, generator: torch.Generator | None = None) -> None:
        self.linear.reset(generator)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return 0.5 * tokens + 0.5 * self.linear(F.normalize(tokens, dim=-1))


def tta_loss(
    clean_probs: torch.Tensor,
    noisy_probs: torch.Tensor,
    hard_weight: float = 0.5,
    order: str = "fused",
) -> torch.Tensor:
    """Official AnoCLIP+ loss per image: ``(count, ..., 2)`` [normal, abnormal]
    probabilities -> ``(count,)`` losses (means over tokens).

    Optimise their sum: each image's adapter copy then gets exactly its own gradient.
    ``order="fused"`` takes one mean of ``entropy + w * hard``; ``"official"`` evaluates
    it as the official ``loss_func`` (``vl_test.py``) does: the entropy term and the hard
    term are averaged separately and the hard term is a masked sum over both states
    (``-mask*log P_noisy - (1-mask)*log P_clean``, mask selecting "abnormal"). Equal in
    exact arithmetic; in float32 the two orders differ by about one rounding step, which
    AdamW's ``eps`` amplifies over the steps.
    """
    if order == "official":
        soft = (-clean_probs * clean_probs.log()).sum(-1).flatten(1).mean(1)
        mask = torch.zeros_like(noisy_probs)
        mask[..., 1] = 1
        hard = -mask * noisy_probs.log() - (1 - mask) * clean_probs.log()
        return 1 * soft + hard_weight * hard.sum(-1).flatten(1).mean(1)
    entropy = -(clean_probs * clean_probs.log()).sum(-1)
    hard = -clean_probs[..., 0].log() - noisy_probs[..., 1].log()
    return (entropy + hard_weight * hard).flatten(1).mean(1)
