"""FineGrainedAD options and its two presets (finegrainedad.md "Defaults for this project").

``official`` reproduces the official code, quirks included (BGR test images, token
matching through a seeded untrained Q-Former, image 0's clustering reused for every
shot). ``default`` fixes those three: RGB test images, matching on the normal prompt
features directly, clustering per shot. Everything else is the official value in both,
and both train a fixed number of epochs and report the harmonic image score only.
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
        cluster_scope: "first" (image 0's clusters for every shot, official) or "per_shot".
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
    cluster_scope: Literal["first", "per_shot"] = "first"
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
        base = cls(preset=preset)
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
    "default": {"test_bgr": False, "matching": "normal", "cluster_scope": "per_shot"},
}
