"""Fitting FineGrainedAD's prompts (finegrainedad.md §3, §5).

The k shots are encoded once (the backbone is frozen) and form a single batch. The
region weights are computed once, before the first step, from the prompts at their
initial values (as the code does at its first iteration). Training is SGD with cosine
annealing for a fixed number of epochs; nothing is selected on test data. With
``shuffle_shots`` the batch is reordered every epoch, as the official shuffling loader
does, while the region weights stay attached to batch positions.

Cost: a step is almost entirely the text tower's forward and backward pass over every
prompt of every level (one batched call). ``fast=True`` (the default) runs each prompt
only up to its EOT token (:meth:`~anomalign.backbones.TextEncoder.encode_embeddings`)
and weights the anchors by the constant region weights once per fit; ``fast=False`` is
the reference path (full 77-token prompts, products recomputed each step), kept for
benchmarks and equality tests. Both give the same losses.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from anomalign.data.images import METHOD_DECODE_SIDE, ImageInput, load_rgb
from anomalign.data.transforms import resize_rgb
from anomalign.methods.finegrainedad.config import FineGrainedADConfig
from anomalign.methods.finegrainedad.losses import mlsa_loss, weighted_anchors
from anomalign.methods.finegrainedad.prompt_learner import MultiLevelPromptLearner
from anomalign.methods.finegrainedad.regions import (
    aggregate_regions,
    aggregate_regions_official,
    match_regions,
    match_regions_of,
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


def encode_shots(
    backbone, images: Sequence[ImageInput], blocks, aliased: bool = False
) -> ShotFeatures:
    """Encode the shots (RGB, as the code's training images) in one batch; ``aliased``
    gives the memory blocks' tokens with the official hooks' aliasing."""
    tokens = backbone.encode(backbone.preprocess(list(images)), blocks, aliased=aliased)
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
    rgb = resize_rgb(load_rgb(image, max_side=METHOD_DECODE_SIDE), (height * tiles, width * tiles))
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
    noise: tuple[torch.Tensor, torch.Tensor] | None = None,
    truncate: bool | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Region weights ``(E+1, k, N)`` and the fine-grid labels of each clustered image.

    ``cluster_scope="official"`` runs the code's multi-shot aggregation on all shots
    (:func:`aggregate_regions_official`; ``noise`` are its two ``(k, N)`` tie-break draws,
    seeded when None); ``"first"`` clusters image 0 and reuses its weights for every
    shot; ``"per_shot"`` clusters every shot on its own. No gradient flows here.
    """
    with torch.inference_mode():
        weights, labels = _region_weights(backbone, images, learner, config, noise, truncate)
    # Plain tensors again (inference tensors cannot take part in the training graph).
    return weights.clone(), [label.clone() for label in labels]


def _region_weights(
    backbone,
    images: Sequence[ImageInput],
    learner: MultiLevelPromptLearner,
    config: FineGrainedADConfig,
    noise: tuple[torch.Tensor, torch.Tensor] | None,
    truncate: bool | None,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    levels = learner.encode(backbone.text, truncate=truncate)
    names = [n for n in learner.level_names if n != "image"]  # components, background
    normal = torch.stack([levels[n].pair(config.feature_average)[0] for n in names])
    tiles = config.cluster_tiles
    h, w = backbone.grid_size
    fine = (tiles * h, tiles * w)
    if config.cluster_scope == "official":
        # the code clusters with the unnormalised normal features (n_pro = 1: one row each)
        raw = [levels[n].raw for n in names]
        if all(r is not None for r in raw):
            normal = torch.stack([r[0].mean(0) for r in raw])  # type: ignore[index]
        tokens = torch.stack([encode_tiled(backbone, image, tiles) for image in images])
        if noise is None:
            generator = torch.Generator().manual_seed(config.seed)
            noise = tuple(torch.rand(tokens.shape[:2], generator=generator) for _ in range(2))
        labels = aggregate_regions_official(tokens, normal, noise)
        matched = match_regions_of(tokens[0], labels[0], normal.shape[0], normal)
        weights = torch.stack(
            [
                region_weights(
                    lab, matched, fine, tiles, config.region_boost, config.region_pooling
                )
                for lab in labels
            ],
            dim=1,
        )
        return weights, list(labels)
    clustered = images[:1] if config.cluster_scope == "first" else images
    all_weights, all_labels = [], []
    for image in clustered:
        tokens = encode_tiled(backbone, image, tiles)
        generator = torch.Generator().manual_seed(config.seed)
        labels = aggregate_regions(tokens, normal, generator, config.background_assignment)
        matched = match_regions(tokens, labels, normal)
        all_weights.append(
            region_weights(labels, matched, fine, tiles, config.region_boost, config.region_pooling)
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
    shot_orders: Sequence[torch.Tensor] | None = None,
    precision: str = "fp32",
    fast: bool = True,
) -> list[float]:
    """Train ``learner`` for exactly ``epochs`` full-batch steps; return the loss per epoch.

    ``shot_orders[e]`` reorders the anchor's shots at epoch ``e`` (the region weights keep
    their positions); ``precision="bf16"`` runs the text tower and the loss under bf16
    autocast with bf16 anchors and weights (the code casts the whole model to bf16, so
    this is close to, not bit-equal with, its arithmetic). ``fast=False`` runs the
    reference path (see the module docstring): same losses.
    """
    params = [p for p in learner.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max(epochs, 1), eta_min=config.eta_min
    )
    losses: list[float] = []
    bf16 = precision == "bf16"
    if bf16:
        anchor = anchor.to(torch.bfloat16)
        region_weights = None if region_weights is None else region_weights.to(torch.bfloat16)
    weighted = None
    if fast and shot_orders is None:  # constant weighted anchors: once per fit
        weighted = weighted_anchors(anchor, region_weights, learner.num_components + 1)
    bar = _progress(epochs, desc, progress)
    for epoch in bar:
        batch = anchor if shot_orders is None else anchor[shot_orders[epoch].to(anchor.device)]
        cast = (
            torch.autocast(anchor.device.type, dtype=torch.bfloat16)
            if bf16
            else contextlib.nullcontext()
        )
        with cast:
            levels = learner.encode(text_encoder, truncate=None if fast else False)
            loss, _parts = mlsa_loss(
                batch,
                levels,
                scale,
                region_weights,
                margin=config.triplet_margin,
                reduce=config.triplet_reduce,
                lambda_match=config.lambda_match,
                reg_loss=reg_loss and config.reg_loss,
                normal_align_loss=config.normal_align_loss,
                average=config.feature_average,
                weighted=weighted,
            )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    return losses


def shot_orders(shots: int, epochs: int, seed: int) -> list[torch.Tensor]:
    """The batch order of each epoch under a seeded shuffle (``shuffle_shots``).

    Epoch 0's order also fixes which shot is "image 0" of the clustering and which shot
    each region weight belongs to, as the official loop clusters its first batch.
    """
    generator = torch.Generator().manual_seed(seed)
    return [torch.randperm(shots, generator=generator) for _ in range(max(epochs, 1))]
