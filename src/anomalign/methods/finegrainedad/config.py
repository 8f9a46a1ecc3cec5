"""FineGrainedAD options and its two presets (finegrainedad.md "Defaults for this project").

``official`` reproduces the official code, quirks included: BGR test images, token
matching through a seeded untrained Q-Former, the official multi-shot cluster
assignment with a (seeded) shuffled shot order, stage-2 background tokens assigned on
the masked distances, the unfold-view region pooling, the aliased memory features,
anchors and galleries averaged from raw text features, the image score from the
segmentation gallery (the released test script), bf16 segmentation training and the
cv2-linear 1024 px pre-resize. ``default`` keeps the method and fixes or cleans those:
RGB test images, matching on the normal prompt features, clustering per shot, clean
block outputs, true 4x4 pooling, row-normalised averages, the classification gallery,
fp32 and a direct resize. Both train a fixed number of epochs and report the harmonic
image score only. Every switch is listed with its two values in :data:`PRESETS`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

from anomalign.errors import ConfigError
from anomalign.methods.options import Bound, check_choices, check_numbers, config_from_preset

Preset = Literal["official", "default"]


@dataclass(frozen=True)
class FineGrainedADConfig:
    """Every switch of FineGrainedAD; defaults are the official code's values.

    Attributes:
        preset: the preset these values started from (recorded in results).
        memory_blocks: 1-based blocks whose original-path tokens form the VAD memory.
        memory_index: "exact" chunked cosine nearest neighbour, or "ivf" (approximate,
            inverted lists from a seeded k-means; for banks of hundreds of images).
        memory_chunk: rows per chunk of the exact search (bounds memory).
        ivf_lists, ivf_probe: number of inverted lists and lists probed per query.
        n_ctx, n_ctx_ab, n_pro_ab: learnable context sizes (§2).
        seg_n_pro, cls_n_pro: prompt copies of the segmentation / classification model.
        seg_epochs, cls_epochs: fixed epoch counts (never chosen on test data).
        lr, momentum, weight_decay, eta_min: SGD with cosine annealing (§5).
        triplet_margin, triplet_reduce: triplet margin and the summed axis ("tokens" is the
            official quirk; "channels" is the per-token variant).
        lambda_match: weight of the handle-vs-learned matching term.
        reg_loss: include L_reg; normal_align_loss: include the normal-side term the code
            computes but leaves out.
        logit_scale: "raw" stored log value (official, ≈4.6) or "exp" (CLIP's ≈100).
        region_aggregation: run the DPC-kNN aggregation and region weights (§3.1-3.2).
        region_boost: weight added inside a prompt's matched region (1.5).
        cluster_tiles: tiles per side of the clustering input (4: 960 px for a 240 model).
        cluster_scope: "official" (the code's multi-shot assignment: every shot keeps its own
            stage-2 labels, later shots' stage-1 masks are mixed with image 0's, prompts are
            matched on image 0's cluster means; finegrainedad.md §3.1), "first" (image 0's
            weights copied to every shot) or "per_shot" (every shot clustered on its own).
        shuffle_shots: reorder the shots every epoch as the official train loader does
            (``shuffle=True``) while the region weights stay fixed by batch position, so
            after epoch 0 each shot is weighted with another shot's regions. Here the
            orders come from a generator seeded with ``seed`` (epoch 0's order also picks
            "image 0" of the clustering); the official orders come from the global RNG.
        background_assignment: stage-2 label of background tokens: "masked" (argmin over
            the masked distances, so they join cluster 0 or token 0's cluster: the code)
            or "nearest" (token 0's nearest centre on unmasked distances). For the
            "first" and "per_shot" scopes; the "official" scope is always "masked".
        region_pooling: 60x60 -> 15x15 pooling of the region weights: "unfold_view" (the
            code's ``F.unfold(...).view(ne, bs, -1, 16).mean``, which scrambles positions)
            or "avg" (true 4x4 average pooling).
        memory_features: "aliased" (block b's output plus block b+1's attention residual,
            the official hooks' in-place aliasing) or "clean" (the block outputs).
        feature_average: how anchors, galleries and L_reg's component sum are formed:
            "raw" (average or sum the unnormalised text features, then normalise: the code)
            or "normalized" (average row-normalised features).
        image_gallery: prompts that score the image: "cls" (the classification model,
            n_pro=3, as the training-time evaluation) or "seg" (the segmentation model,
            n_pro=1, as the released test script loads). With "seg" the classification
            model is not trained.
        seg_precision: "bf16" (the code's segmentation default; autocast here) or "fp32".
        pre_resize: "cv2_1024" (cv2 bilinear to 1024x1024 first, then PIL bicubic to the
            input size, 4x it for clustering: the official loader) or "none".
        matching: token-to-prompt matching: "qformer" (seeded untrained Q-Former, official),
            "normal" (on t^n directly) or "pair" (on the mean of t^n and t^a).
        fusion: "harmonic" 1/(1/T+1/V), "sum", "textual" (PAD only), "visual" (VAD only).
        test_bgr: feed test images with channels reversed (official PromptAD quirk).
        generic_states: add PromptAD's eight generic defect states to the class phrases.
        gaussian_sigma: sigma of the map smoothing at output size.
        seed: seed of prompt init, random caption edits, clustering noise and Q-Former.
    """

    preset: Preset = "official"
    memory_blocks: tuple[int, ...] = (3, 8)
    memory_index: Literal["exact", "ivf"] = "exact"
    memory_chunk: int = 4096
    ivf_lists: int = 64
    ivf_probe: int = 8
    n_ctx: int = 4
    n_ctx_ab: int = 1
    n_pro_ab: int = 4
    seg_n_pro: int = 1
    cls_n_pro: int = 3
    seg_epochs: int = 100
    cls_epochs: int = 50
    lr: float = 0.002
    momentum: float = 0.9
    weight_decay: float = 5e-4
    eta_min: float = 1e-5
    triplet_margin: float = 1.0
    triplet_reduce: Literal["tokens", "channels"] = "tokens"
    lambda_match: float = 0.001
    reg_loss: bool = True
    normal_align_loss: bool = False
    logit_scale: Literal["raw", "exp"] = "raw"
    region_aggregation: bool = True
    region_boost: float = 1.5
    cluster_tiles: int = 4
    cluster_scope: Literal["official", "first", "per_shot"] = "official"
    shuffle_shots: bool = True
    background_assignment: Literal["masked", "nearest"] = "masked"
    region_pooling: Literal["unfold_view", "avg"] = "unfold_view"
    memory_features: Literal["aliased", "clean"] = "aliased"
    feature_average: Literal["raw", "normalized"] = "raw"
    image_gallery: Literal["seg", "cls"] = "seg"
    seg_precision: Literal["bf16", "fp32"] = "bf16"
    pre_resize: Literal["cv2_1024", "none"] = "cv2_1024"
    matching: Literal["qformer", "normal", "pair"] = "qformer"
    fusion: Literal["harmonic", "sum", "textual", "visual"] = "harmonic"
    test_bgr: bool = True
    generic_states: bool = False
    gaussian_sigma: float = 4.0
    seed: int = 111

    @classmethod
    def from_preset(cls, preset: Preset = "default", **overrides: Any) -> FineGrainedADConfig:
        """Start from a preset and apply named overrides (unknown names are an error)."""
        overrides = dict(overrides)
        if isinstance(overrides.get("memory_blocks"), list | tuple):
            overrides["memory_blocks"] = tuple(overrides["memory_blocks"])
        config = config_from_preset(cls, "FineGrainedAD", PRESETS, preset, overrides)
        config.validate()
        return config

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the option when a value is out of range."""
        check_choices(self, "FineGrainedAD")
        check_numbers(self, "FineGrainedAD", BOUNDS)
        if not self.memory_blocks:
            raise ConfigError("FineGrainedAD option memory_blocks must name at least one block.")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["memory_blocks"] = list(self.memory_blocks)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FineGrainedADConfig:
        """Rebuild a config saved with :meth:`to_dict` (used by persistence)."""
        values = dict(data)
        preset = values.pop("preset", "official")
        # options a bundle predates take its preset's value, not the official one
        base = cls(preset=preset, **PRESETS.get(preset, {}))
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"Saved FineGrainedAD options {unknown} are not known.")
        blocks = values.get("memory_blocks", (3, 8))
        values["memory_blocks"] = tuple(blocks) if isinstance(blocks, list | tuple) else blocks
        config = replace(base, **values)
        config.validate()
        return config


#: Allowed ranges of the numeric options (wide, but a typo cannot hang a run).
BOUNDS: dict[str, Bound] = {
    "memory_blocks": Bound(1, 1000),
    "memory_chunk": Bound(1, 2**24),
    "ivf_lists": Bound(1, 2**16),
    "ivf_probe": Bound(1, 2**16),
    "n_ctx": Bound(1, 64),
    "n_ctx_ab": Bound(1, 64),
    "n_pro_ab": Bound(1, 64),
    "seg_n_pro": Bound(1, 64),
    "cls_n_pro": Bound(1, 64),
    "seg_epochs": Bound(0, 100_000),
    "cls_epochs": Bound(0, 100_000),
    "lr": Bound(0, 10, open_low=True),
    "momentum": Bound(0, 1),
    "weight_decay": Bound(0, 10),
    "eta_min": Bound(0, 10),
    "triplet_margin": Bound(0, 1000),
    "lambda_match": Bound(0, 1000),
    "region_boost": Bound(0, 1000),
    "cluster_tiles": Bound(1, 16),
    "gaussian_sigma": Bound(0, 1000),
    "seed": Bound(0, 2**63 - 1),
}

#: What each preset changes from the official values.
PRESETS: dict[str, dict[str, Any]] = {
    "official": {},
    "default": {
        "test_bgr": False,
        "matching": "normal",
        "cluster_scope": "per_shot",
        "shuffle_shots": False,
        "background_assignment": "nearest",
        "region_pooling": "avg",
        "memory_features": "clean",
        "feature_average": "normalized",
        "image_gallery": "cls",
        "seg_precision": "fp32",
        "pre_resize": "none",
    },
}
