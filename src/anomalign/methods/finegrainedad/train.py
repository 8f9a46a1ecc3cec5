"""Fitting FineGrainedAD's prompts (finegrainedad.md §3, §5).

The k shots are encoded once (the backbone is frozen) and form a single batch. The
region weights are computed once, before the first step, from the prompts at their
initial values (as the code does at its first iteration). Training is SGD with cosine
annealing for a fixed number of epochs; nothing is selected on test data.

Cost: a step is almost entirely the text tower's forward and backward pass over every
prompt of every level (one batched call). ``fast=True`` (the default) runs each prompt
only up to its EOT token (:meth:`~anomalign.backbones.TextEncoder.encode_embeddings`)
and weights the anchors by the constant region weights once per fit; ``fast=False`` is
the reference path (full 77-token prompts, products recomputed each step), kept for
benchmarks and equality tests. Both give the same losses.
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
from anomalign.methods.finegrainedad.losses import mlsa_loss, weighted_anchors
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
    truncate: bool | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Region weights ``(E+1, k, N)`` and the fine-grid labels of each clustered image.

    ``cluster_scope="first"`` clusters image 0 and reuses its weights for every shot
    (the code); ``"per_shot"`` clusters every shot. No gradient flows here.
    """
    with torch.inference_mode():
        weights, labels = _region_weights(backbone, images, learner, config, truncate)
    # Plain tensors again (inference tensors cannot take part in the training graph).
    return weights.clone(), [label.clone() for label in labels]


def _region_weights(
    backbone,
    images: Sequence[ImageInput],
    learner: MultiLevelPromptLearner,
    config: FineGrainedADConfig,
    truncate: bool | None,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    levels = learner.encode(backbone.text, truncate=truncate)
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
    fast: bool = True,
) -> list[float]:
    """Train ``learner`` for exactly ``epochs`` full-batch steps; return the loss per epoch.

    ``fast=False`` runs the reference path (see the module docstring): same losses.
    """
    params = [p for p in learner.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max(epochs, 1), eta_min=config.eta_min
    )
    losses: list[float] = []
    weighted = None
    if fast:
        weighted = weighted_anchors(anchor, region_weights, learner.num_components + 1)
    bar = _progress(epochs, desc, progress)
    for _ in bar:
        levels = learner.encode(text_encoder, truncate=None if fast else False)
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
            weighted=weighted,
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    return losses
