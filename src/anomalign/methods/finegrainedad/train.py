"""Fitting FineGrainedAD's prompts (finegrainedad.md §3, §5).

The k shots are encoded once (the backbone is frozen) and form a single batch. The
region weights are computed once, before the first step, from the prompts at their
initial values (as the code does at its first iteration). Training is SGD with cosine
annealing for a fixed number of epochs; nothing is selected on test data.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from anomalign.data.images import ImageInput, load_rgb
from anomalign.data.transforms import resize_rgb
from anomalign.methods.finegrainedad.config import FineGrainedADConfig
from anomalign.methods.finegrainedad.losses import mlsa_loss
from anomalign.methods.finegrainedad.prompt_learner import MultiLevelPromptLearner
from anomalign.methods.finegrainedad.regions import (
    aggregate_regions,
    match_regions,
    region_weights,
)


@dataclass
class ShotFeatures:
    """Frozen-backbone features of the k normal images.

    Attributes:
        local: ``(k, N, D)`` normalised V-V patch tokens (projected).
        glob: ``(k, D)`` normalised global tokens.
        intermediates: ``{block: (k, N, W)}`` original-path tokens for the memory.
        grid: patch grid ``(h, w)``.
    """

    local: torch.Tensor
    glob: torch.Tensor
    intermediates: dict[int, torch.Tensor]
    grid: tuple[int, int]


def encode_shots(backbone, images: Sequence[ImageInput], blocks) -> ShotFeatures:
    """Encode the shots (RGB, as the code's training images) in one batch."""
    tokens = backbone.encode(backbone.preprocess(list(images)), blocks)
    return ShotFeatures(
        torch.nn.functional.normalize(tokens.local_tokens.float(), dim=-1),
        torch.nn.functional.normalize(tokens.global_token.float(), dim=-1),
        {b: t.float() for b, t in tokens.intermediates.items()},
        tuple(tokens.grid_size),
    )


def encode_tiled(backbone, image: ImageInput, tiles: int) -> torch.Tensor:
    """Normalised projected tokens of a ``tiles x tiles`` tiled, upsized image.

    The image is squash-resized to ``tiles`` times the input size (960 px for a 240
    model), cut into tiles, each tile encoded, and the tokens reassembled into the fine
    grid ``(tiles*h, tiles*w)``; returns ``(tiles*h*tiles*w, D)``.
    """
    height, width = backbone.image_size
    rgb = resize_rgb(load_rgb(image), (height * tiles, width * tiles))
    crops = [
        backbone.preprocessor.normalize(
            np.ascontiguousarray(rgb[r * height : (r + 1) * height, c * width : (c + 1) * width])
        )
        for r in range(tiles)
        for c in range(tiles)
    ]
    tokens = backbone.encode(torch.stack(crops).to(backbone.device)).local_tokens.float()
    h, w = backbone.grid_size
    grid = tokens.view(tiles, tiles, h, w, -1).permute(0, 2, 1, 3, 4)
    return torch.nn.functional.normalize(grid.reshape(tiles * h * tiles * w, -1), dim=-1)


def compute_region_weights(
    backbone,
    images: Sequence[ImageInput],
    learner: MultiLevelPromptLearner,
    config: FineGrainedADConfig,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Region weights ``(E+1, k, N)`` and the fine-grid labels of each clustered image.

    ``cluster_scope="first"`` clusters image 0 and reuses its weights for every shot
    (the code); ``"per_shot"`` clusters every shot.
    """
    with torch.no_grad():
        levels = learner.encode(backbone.text)
    names = [n for n in learner.level_names if n != "image"]  # components, background
    normal = torch.stack([levels[n].pair()[0] for n in names])
    tiles = config.cluster_tiles
    h, w = backbone.grid_size
    clustered = images[:1] if config.cluster_scope == "first" else images
    all_weights, all_labels = [], []
    for image in clustered:
        tokens = encode_tiled(backbone, image, tiles)
        generator = torch.Generator().manual_seed(config.seed)
        labels = aggregate_regions(tokens, normal, generator)
        matched = match_regions(tokens, labels, normal)
        all_weights.append(
            region_weights(labels, matched, (tiles * h, tiles * w), tiles, config.region_boost)
        )
        all_labels.append(labels)
    weights = torch.stack(all_weights, dim=1)  # (E+1, k or 1, N)
    if weights.shape[1] != len(images):
        weights = weights.expand(-1, len(images), -1)
    return weights, all_labels


def _progress(total: int, desc: str, enabled: bool | None):
    from tqdm.auto import tqdm

    disable = (not sys.stderr.isatty()) if enabled is None else not enabled
    return tqdm(range(total), desc=desc, disable=disable, leave=False)


def train_learner(
    learner: MultiLevelPromptLearner,
    text_encoder,
    anchor: torch.Tensor,
    scale: torch.Tensor,
    config: FineGrainedADConfig,
    epochs: int,
    region_weights: torch.Tensor | None = None,
    reg_loss: bool = True,
    desc: str = "FineGrainedAD",
    progress: bool | None = None,
) -> list[float]:
    """Train ``learner`` for exactly ``epochs`` full-batch steps; return the loss per epoch."""
    params = [p for p in learner.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max(epochs, 1), eta_min=config.eta_min
    )
    losses: list[float] = []
    bar = _progress(epochs, desc, progress)
    for _ in bar:
        levels = learner.encode(text_encoder)
        loss, _parts = mlsa_loss(
            anchor,
            levels,
            scale,
            region_weights,
            margin=config.triplet_margin,
            reduce=config.triplet_reduce,
            lambda_match=config.lambda_match,
            reg_loss=reg_loss and config.reg_loss,
            normal_align_loss=config.normal_align_loss,
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    return losses
