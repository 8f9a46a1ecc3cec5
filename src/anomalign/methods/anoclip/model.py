"""AnoCLIP's math as a plain ``nn.Module``: tokens and text in, probabilities out.

* Pixel path (anoclip.md §3 "Pixel map"): ``softmax(scale * norm(z) @ [t_n, t_a])``,
  abnormal probability on the patch grid, optional 3x3 (or 5x5) replicate-padded mean,
  bilinear upsampling with ``align_corners=True``.
* Image path (§3 "Image score"): the same softmax on the original-path global token,
  averaged over augmented views.
* AnoCLIP+ (§4): :meth:`AnoCLIPModel.adapt` optimises an adapter on one image's tokens
  with the clean/noisy loss and returns the adapted tokens.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from anomalign.components.postprocess import mean_filter, upsample
from anomalign.data.tiling import stitch_tiles
from anomalign.methods.anoclip.adapter import LinearAdapter, TextAdapter, tta_loss
from anomalign.methods.anoclip.config import AnoCLIPConfig


class AnoCLIPModel(nn.Module):
    """AnoCLIP for one prompt set (one category).

    Args:
        config: the options.
        text_pair: ``(D, 2)`` normalised [normal, abnormal] state embeddings.
        prompt_basis: ``(2P, D)`` every individually normalised prompt embedding,
            normals first: the TextAdapter's output basis.
    """

    def __init__(
        self, config: AnoCLIPConfig, text_pair: torch.Tensor, prompt_basis: torch.Tensor
    ) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("text_pair", text_pair.detach().clone())
        self.register_buffer("prompt_basis", prompt_basis.detach().clone())

    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(..., D)`` tokens -> ``(..., 2)`` scaled cosines with [normal, abnormal]."""
        return self.config.logit_scale * (F.normalize(tokens.float(), dim=-1) @ self.text_pair)

    def probabilities(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(..., D)`` tokens -> ``(..., 2)`` [normal, abnormal] probabilities."""
        return torch.softmax(self.logits(tokens), dim=-1)

    def stitched_probabilities(
        self, tokens: torch.Tensor, grid: tuple[int, int], tile: int, boxes, size
    ) -> torch.Tensor:
        """Tiled TTA probabilities as the official VisA script: ``(..., T, N, D)`` tokens of
        T tiles -> logits upsampled per tile (``align_corners=True``), stitched (overlaps
        averaged), then softmax: ``(..., H, W, 2)``."""
        lead = tokens.shape[:-3]
        count = tokens.shape[-3]
        logits = self.logits(tokens).reshape(-1, *grid, 2).permute(0, 3, 1, 2)
        logits = upsample(logits, (tile, tile), align_corners=True)
        logits = logits.reshape(-1, count, 2, tile, tile)
        stitched = torch.stack([stitch_tiles(one, boxes, size) for one in logits])
        return torch.softmax(stitched.movedim(1, -1), dim=-1).reshape(*lead, *size, 2)

    def image_scores(self, global_tokens: torch.Tensor) -> torch.Tensor:
        """``(B, V, D)`` global tokens of V views -> ``(B,)`` mean abnormal probability."""
        return self.probabilities(global_tokens)[..., 1].mean(dim=1)

    def grid_maps(self, local_tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """``(B, N, D)`` local tokens -> ``(B, 1, h, w)`` abnormal probability, smoothed."""
        probs = self.probabilities(local_tokens)[..., 1]
        return self.smooth_grid(probs.view(probs.shape[0], 1, *grid))

    def smooth_grid(self, maps: torch.Tensor) -> torch.Tensor:
        """The configured patch-grid smoothing of ``(B, 1, h, w)`` maps."""
        if self.config.smoothing == "mean3":
            maps = mean_filter(maps, 3)
        elif self.config.smoothing == "mean5":
            maps = mean_filter(maps, 5)
        return maps

    def pixel_maps(
        self, local_tokens: torch.Tensor, grid: tuple[int, int], size: tuple[int, int]
    ) -> torch.Tensor:
        """Grid maps upsampled bilinearly (``align_corners=True``) to the input size."""
        return upsample(self.grid_maps(local_tokens, grid), size, align_corners=True)[:, 0]

    def make_adapter(self, count: int = 1) -> nn.Module:
        """A fresh adapter of the configured type (``count`` copies, one per image)."""
        if self.config.adapter == "text":
            adapter: nn.Module = TextAdapter(self.prompt_basis, count)
        else:
            adapter = LinearAdapter(self.text_pair.shape[0], count)
        return adapter.to(self.text_pair.device)

    def make_optimizer(self, adapter: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            adapter.parameters(), lr=self.config.tta_lr, weight_decay=self.config.tta_weight_decay
        )

    def adapt(
        self,
        local_tokens: torch.Tensor,
        adapter: nn.Module,
        optimizer: torch.optim.Optimizer,
        generator: torch.Generator,
        probabilities: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, list[list[float]]]:
        """Test-time adaptation of ``count`` images' tokens ``(count, ..., N, D)`` (tiles
        may add a dimension), one adapter copy per image.

        Resets the adapter from ``generator``, runs ``tta_steps`` AdamW steps on the
        clean/noisy loss and returns the adapted clean tokens and the summed loss before
        each step. The noise ``N(0, noise_sigma^2)`` is drawn from ``generator`` with the
        shape of one image's tokens and shared by the copies, so a batch equals the
        images adapted one by one with the same seed. ``probabilities`` maps the
        adapted ``(count, 2, ...)`` [clean, noisy] tokens to probabilities ``(count, 2,
        ..., 2)`` (default: per token).
        """
        config = self.config
        to_probs = probabilities or self.probabilities
        tokens = local_tokens.detach().float()
        adapter.reset(generator)
        losses: list[list[float]] = []
        with torch.enable_grad():
            for _ in range(config.tta_steps):
                noise = torch.randn(tokens.shape[1:], generator=generator, device=generator.device)
                noisy = tokens + config.noise_sigma * noise.to(tokens.device)
                probs = to_probs(adapter(torch.stack([tokens, noisy], dim=1)))
                per_image = tta_loss(
                    probs[:, 0], probs[:, 1], config.hard_loss_weight, config.tta_loss_order
                )
                optimizer.zero_grad()
                per_image.sum().backward()
                optimizer.step()
                losses.append(per_image.detach().cpu().tolist())
        with torch.no_grad():
            return adapter(tokens), [list(step) for step in zip(*losses, strict=True)]

    @torch.no_grad()
    def loss_of(
        self, local_tokens: torch.Tensor, adapter: nn.Module | None, noise: torch.Tensor
    ) -> float:
        """The TTA loss of one image's ``(N, D)`` tokens with given noise (diagnostics)."""
        tokens = local_tokens.float()
        stack = torch.stack([tokens, tokens + noise])[None]
        probs = self.probabilities(adapter(stack) if adapter is not None else stack)
        config = self.config
        return float(
            tta_loss(probs[:, 0], probs[:, 1], config.hard_loss_weight, config.tta_loss_order)[0]
        )
