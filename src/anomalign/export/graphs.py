"""Export graphs: one ``nn.Module`` per method, normalised pixels in, score and map out.

Each graph is built from a fitted detector's *own* modules (the dual-path encoder, the
method model with its buffers) and calls the method's own functions in the order its
``predict`` does; the fitted state (text features, memory banks, prompt galleries)
becomes constants of the exported graph. Only steps that do not trace into a static
graph get an equivalent exportable form here, never different math:

* FineGrainedAD's exact patch memory searches in chunks (a Python loop over the query
  count, which depends on the batch); :class:`ExactMemory` is the same
  ``min_j (1 - cos(q, m_j)) / 2`` without chunks (finegrainedad.md §4 VAD).
* scipy's ``gaussian_filter`` (map smoothing, finegrainedad.md §4 / anoclip.md
  "smoothing=gaussian") runs on numpy after the torch graph; :class:`GaussianSmoothing`
  is the same kernel (``truncate=4``) with the same half-sample ("reflect") padding, as
  two 1-D convolutions.
* AnoCLIP's 22-view image score encodes the views with ``encode_global`` in chunks of 32;
  here all in one pass of the dual-path encoder's original path, whose CLS token is
  ``encode_global``'s (open_clip's ``encode_image``), so the graph holds the tower once.

Every graph maps ``(B, 3, H, W)`` float32 pixels, preprocessed as the detector does
(squash resize, ``(x / 255 - mean) / std``), to ``score (B,)`` and ``map (B, h, w)`` at
the method's own output size.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from anomalign.components.postprocess import upsample
from anomalign.errors import ConfigError
from anomalign.methods.anoclip import AnoCLIP
from anomalign.methods.anoclip.model import AnoCLIPModel
from anomalign.methods.anoclip.views import NUM_VIEWS, augmented_views
from anomalign.methods.finegrainedad import FineGrainedAD
from anomalign.methods.finegrainedad.detector import EVAL_SIZE

#: Image scores an AnoCLIP export can compute (anoclip.md §3 "Image score").
IMAGE_SCORES: tuple[str, ...] = ("single", "views22")


def dual_path_encoder(backbone: Any, vv_depth: int | None) -> nn.Module:
    """The backbone's dual-path encoder module (what ``backbone.encode`` runs), as a
    submodule of the export graph so that its weights become the graph's constants."""
    make = getattr(backbone, "encoder", None)
    if make is None:
        raise ConfigError(
            f"Backbone '{backbone.spec}' ({backbone.family}) has no dual-path encoder; "
            "export needs an open_clip ViT backbone."
        )
    return make(vv_depth)


def gaussian_kernel1d(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """scipy.ndimage's 1-D Gaussian weights: radius ``int(truncate * sigma + 0.5)``."""
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    weights = np.exp(-0.5 / (float(sigma) ** 2) * x**2)
    return weights / weights.sum()


def reflect_indices(length: int, radius: int) -> np.ndarray:
    """Indices that pad an axis of ``length`` by ``radius`` as scipy's ``mode="reflect"``
    (``d c b a | a b c d | d c b a``, repeated for radii longer than the axis)."""
    return np.pad(np.arange(length), radius, mode="symmetric")


class GaussianSmoothing(nn.Module):
    """``scipy.ndimage.gaussian_filter(m, sigma)`` per map of ``(B, H, W)`` (reflect mode).

    Separable: rows are padded by gathering the reflected indices, then a ``(1, K)``
    convolution; the same for columns (scipy filters axis 0, then axis 1, in float64;
    here float32, a difference of order 1e-7).
    """

    def __init__(self, sigma: float, size: tuple[int, int]) -> None:
        super().__init__()
        weights = gaussian_kernel1d(sigma)
        radius = (len(weights) - 1) // 2
        kernel = torch.tensor(weights, dtype=torch.float32)
        self.register_buffer("kernel_h", kernel.view(1, 1, -1, 1))
        self.register_buffer("kernel_w", kernel.view(1, 1, 1, -1))
        self.register_buffer("rows", torch.from_numpy(reflect_indices(size[0], radius)))
        self.register_buffer("cols", torch.from_numpy(reflect_indices(size[1], radius)))

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        """``(B, H, W)`` -> ``(B, H, W)`` smoothed."""
        x = maps[:, None]
        x = F.conv2d(x.index_select(2, self.rows), self.kernel_h)
        x = F.conv2d(x.index_select(3, self.cols), self.kernel_w)
        return x[:, 0]


class AnoCLIPGraph(nn.Module):
    """AnoCLIP without TTA (anoclip.md §2-3): dual-path tokens -> image score and pixel map.

    Args:
        detector: a fitted :class:`AnoCLIP` (``tta=False``, ``tiling="squash"``).
        model: its :class:`AnoCLIPModel` (the fitted category's text features).
        image_score: "single" (the original-path CLS of the image) or "views22" (mean
            over the 22 augmented views, :mod:`anomalign.methods.anoclip.views`).
    """

    def __init__(self, detector: AnoCLIP, model: AnoCLIPModel, image_score: str) -> None:
        super().__init__()
        if image_score not in IMAGE_SCORES:
            raise ConfigError(f"image_score must be one of {IMAGE_SCORES}, got {image_score!r}.")
        config = detector.config
        self.encoder = dual_path_encoder(detector.backbone, config.vv_depth)
        self.model = model
        # the views need only the original-path CLS: an encoder with the V-V path in the
        # last block alone (its global token is ``encode_image``'s, anoclip.md §2
        # "Outputs"); it shares the weights and op pattern with ``encoder``.
        self.view_encoder = dual_path_encoder(detector.backbone, 1)
        self.image_score = image_score
        self.size = tuple(detector.backbone.image_size)
        pre = detector.preprocessor
        self.gray_stats = (pre.mean, pre.std) if config.grayscale_on_raw else (None, None)
        self.smooth = (
            GaussianSmoothing(config.gaussian_sigma, self.size)
            if config.smoothing == "gaussian" and config.gaussian_sigma > 0
            else None
        )

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 3, H, W)`` normalised pixels -> ``score (B,)``, ``map (B, H, W)``."""
        tokens = self.encoder(pixels)
        if self.image_score == "single":
            score = self.model.image_scores(tokens.global_token[:, None])
        else:
            views = augmented_views(pixels, *self.gray_stats)
            encoded = self.view_encoder(views.flatten(0, 1)).global_token
            score = self.model.image_scores(encoded.view(pixels.shape[0], NUM_VIEWS, -1))
        maps = self.model.pixel_maps(tokens.local_tokens.float(), tokens.grid_size, self.size)
        if self.smooth is not None:
            maps = self.smooth(maps)
        return score.float(), maps.float()


class ExactMemory(nn.Module):
    """The VAD patch memory (finegrainedad.md §4) as constants: ``{block: (M, W)}`` banks of
    normalised normal tokens; a token scores ``(1 - max_j cos(q, m_j)) / 2``, averaged over
    the blocks, as :class:`~anomalign.components.memory.PatchMemory` with an
    exact index (whose chunking only bounds memory)."""

    def __init__(self, banks: dict[int, torch.Tensor]) -> None:
        super().__init__()
        self.blocks = tuple(sorted(banks))
        for block in self.blocks:
            self.register_buffer(f"bank_{block}", banks[block].detach().float().clone())

    def forward(self, intermediates: dict[int, torch.Tensor]) -> torch.Tensor:
        """``{block: (B, N, W)}`` tokens -> ``(B, N)`` VAD scores in [0, 1]."""
        total = None
        for block in self.blocks:
            queries = F.normalize(intermediates[block].float(), dim=-1)
            bank = getattr(self, f"bank_{block}")
            score = (1.0 - (queries @ bank.T).amax(dim=-1)) / 2.0
            total = score if total is None else total + score
        assert total is not None
        return total / len(self.blocks)


class FineGrainedADGraph(nn.Module):
    """FineGrainedAD inference (finegrainedad.md §4): PAD + VAD per token, fusion,
    bilinear upsampling, Gaussian smoothing; image score ``fuse(T_img, max V)``.

    Args:
        detector: a fitted :class:`FineGrainedAD` with ``memory_index="exact"``.
    """

    def __init__(self, detector: FineGrainedAD) -> None:
        super().__init__()
        model = detector._require_fitted()
        if detector.config.memory_index != "exact":
            raise ConfigError("The export graph needs FineGrainedAD's exact patch memory.")
        self.encoder = dual_path_encoder(detector.backbone, None)
        self.model = model
        self.memory = ExactMemory(model.memory.banks)
        self.aliased = detector.config.memory_features == "aliased"
        self.size = (EVAL_SIZE, EVAL_SIZE)  # the method's protocol map size
        sigma = detector.config.gaussian_sigma
        self.smooth = GaussianSmoothing(sigma, self.size) if sigma > 0 else None

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 3, H, W)`` normalised pixels -> ``score (B,)``, ``map (B, H, W)``."""
        model = self.model
        tokens = self.encoder(pixels, intermediate_blocks=self.memory.blocks, aliased=self.aliased)
        h, w = tokens.grid_size
        local = F.normalize(tokens.local_tokens.float(), dim=-1)
        glob = F.normalize(tokens.global_token.float(), dim=-1)
        textual = model.textual(local, model.seg_pairs, model.seg_keys).view(-1, 1, h, w)
        visual = self.memory(tokens.intermediates).view(-1, 1, h, w)
        textual_image = model.textual(glob, model.cls_pairs, model.cls_keys)
        fused = upsample(model.fuse(textual, visual), self.size, align_corners=False)[:, 0]
        visual_max = upsample(visual, self.size, align_corners=False).flatten(1).amax(dim=1)
        score = model.fuse(textual_image, visual_max)
        if self.smooth is not None:
            fused = self.smooth(fused)
        return score.float(), fused.float()
