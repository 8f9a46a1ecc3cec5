"""PatchCore options (Roth et al., "Towards Total Recall in Industrial Anomaly Detection",
CVPR 2022); defaults are the paper's (and anomalib's) values."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from anomalign.errors import ConfigError
from anomalign.methods.options import Bound, check_choices, check_numbers, config_from_preset

Preset = Literal["default", "official"]


@dataclass(frozen=True)
class PatchCoreConfig:
    """Every switch of PatchCore.

    Attributes:
        preset: "default" (= "official": the paper's values; one name kept for the CLI).
        blocks: two mid-level blocks of the backbone (1-based, see the timm family):
            3 and 4 are WideResNet50's ``layer2`` and ``layer3`` (the paper's) and
            EfficientNet-Lite0's stride-8 and stride-16 stages.
        neighbourhood: ``p`` of the locally aware features: a ``p x p`` average pool
            (stride 1, zero padding counted) on each block's feature map, the coarser
            block upsampled bilinearly to the finer grid, channels concatenated (§3.1).
        embed_dim: average-pool the concatenated channels to this many (the original
            code's 1024 for WideResNet50); None keeps them all.
        coreset_ratio: memory size as a fraction of all normal patch features (10%,
            the paper's PatchCore-10%); 1 keeps every feature.
        coreset_max: at most this many memory rows (None: no cap): bounds the greedy
            coreset's cost in full-shot runs (e.g. 1000 rows is about PatchCore-1% on ELPV).
        projection_dim: random-projection size for the coreset distances (paper: 128).
        num_neighbors: ``b`` of the image-score reweighting (paper: 9); 1 disables it.
        sigma: Gaussian smoothing of the full-size map (paper: 4).
        seed: seed of the coreset (first centre and random projection).
        cache_features: keep the patch features of image files in a process-wide cache
            (keyed by backbone, options, path, size and mtime; at most 4 GiB), so that a
            benchmark's units of one category encode each image once. The features equal
            an uncached run's up to the float rounding of differently sized batches.
    """

    preset: Preset = "default"
    blocks: tuple[int, ...] = (3, 4)
    neighbourhood: int = 3
    embed_dim: int | None = None
    coreset_ratio: float = 0.1
    coreset_max: int | None = None
    projection_dim: int = 128
    num_neighbors: int = 9
    sigma: float = 4.0
    seed: int = 0
    cache_features: bool = False

    @classmethod
    def from_preset(cls, preset: Preset = "default", **overrides: Any) -> PatchCoreConfig:
        if "blocks" in overrides and overrides["blocks"] is not None:
            overrides["blocks"] = tuple(int(b) for b in overrides["blocks"])
        config = config_from_preset(cls, "PatchCore", PRESETS, preset, overrides)
        config.validate()
        return config

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the option when a value is out of range."""
        check_choices(self, "PatchCore")
        check_numbers(self, "PatchCore", BOUNDS)
        if not self.blocks:
            raise ConfigError("PatchCore option blocks needs at least one block.")
        if self.neighbourhood % 2 == 0:
            raise ConfigError(
                f"PatchCore option neighbourhood must be an odd number >= 1, got "
                f"{self.neighbourhood}."
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: Allowed ranges of the numeric options (wide, but a typo cannot hang a run).
BOUNDS: dict[str, Bound] = {
    "blocks": Bound(1, 1000),
    "neighbourhood": Bound(1, 99),
    "embed_dim": Bound(1, 1e6),
    "coreset_ratio": Bound(0, 1, open_low=True),
    "coreset_max": Bound(1, 1e9),
    "projection_dim": Bound(1, 1e5),
    "num_neighbors": Bound(1, 1e6),
    "sigma": Bound(0, 1000),
    "seed": Bound(0, 2**63 - 1),
}

PRESETS: dict[str, dict[str, Any]] = {"default": {}, "official": {}}
