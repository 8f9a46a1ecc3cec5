"""AnoCLIP+'s test-time adapter and its loss (anoclip.md §4).

* :class:`TextAdapter`: ``0.5 z + 0.5 tanh(A(z/|z|)) @ T_all`` with ``A: D -> 2P`` on the
  basis of all individually normalised prompt embeddings (normals first).
* :class:`LinearAdapter`: ``0.5 z + 0.5 B(z/|z|)`` with ``B: D -> D``.
The residual uses the un-normalised token. :func:`tta_loss` is the official loss:
entropy of the clean prediction + ``w`` x (-log P_clean(normal) - log P_noisy(abnormal)).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


@torch.no_grad()
def _reset_linear(layer: nn.Linear, generator: torch.Generator | None) -> None:
    """PyTorch's default ``nn.Linear`` init, drawn from ``generator`` (on its own device,
    so a CPU generator gives the same weights on CPU and CUDA)."""
    device = generator.device if generator is not None else layer.weight.device
    weight = torch.empty(layer.weight.shape, device=device)
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
    layer.weight.copy_(weight)
    if layer.bias is not None:
        bound = 1.0 / math.sqrt(layer.in_features) if layer.in_features > 0 else 0.0
        bias = torch.empty(layer.bias.shape, device=device)
        nn.init.uniform_(bias, -bound, bound, generator=generator)
        layer.bias.copy_(bias)


class TextAdapter(nn.Module):
    """Adapter whose output lies in the span of the prompt embeddings ``basis`` (P, D)."""

    def __init__(self, basis: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("basis", basis.detach().clone(), persistent=False)
        self.linear = nn.Linear(basis.shape[1], basis.shape[0])

    def reset(self, generator: torch.Generator | None = None) -> None:
        _reset_linear(self.linear, generator)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        affinity = torch.tanh(self.linear(F.normalize(tokens, dim=-1)))
        return 0.5 * tokens + 0.5 * affinity @ self.basis


class LinearAdapter(nn.Module):
    """Adapter ``0.5 z + 0.5 B(z/|z|)`` (the official VisA script's choice)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, dim)

    def reset(self, generator: torch.Generator | None = None) -> None:
        _reset_linear(self.linear, generator)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return 0.5 * tokens + 0.5 * self.linear(F.normalize(tokens, dim=-1))


def tta_loss(
    clean_probs: torch.Tensor, noisy_probs: torch.Tensor, hard_weight: float = 0.5
) -> torch.Tensor:
    """Official AnoCLIP+ loss on ``(..., 2)`` probabilities (normal, abnormal) per token."""
    entropy = -(clean_probs * clean_probs.log()).sum(-1).mean()
    hard = (-clean_probs[..., 0].log() - noisy_probs[..., 1].log()).mean()
    return entropy + hard_weight * hard
