"""WinCLIP / WinCLIP+ options; defaults are the paper's (and anomalib's)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from anomalign.errors import ConfigError
from anomalign.methods.options import Bound, check_choices, check_numbers, config_from_preset

Preset = Literal["default", "official"]


@dataclass(frozen=True)
class WinCLIPConfig:
    """Every switch of WinCLIP.

    Attributes:
        preset: "default" (= "official": the paper's values).
        scales: window sizes in patches (paper: 2 and 3 on ViT-B-16-plus-240's 15x15 grid).
        chunk: window sequences per transformer call (memory bound, not numbers).
    """

    preset: Preset = "default"
    scales: tuple[int, ...] = (2, 3)
    chunk: int = 4096

    @classmethod
    def from_preset(cls, preset: Preset = "default", **overrides: Any) -> WinCLIPConfig:
        if "scales" in overrides:
            overrides["scales"] = tuple(int(s) for s in overrides["scales"])
        config = config_from_preset(cls, "WinCLIP", PRESETS, preset, overrides)
        check_choices(config, "WinCLIP")
        check_numbers(config, "WinCLIP", BOUNDS)
        if not config.scales:
            raise ConfigError("WinCLIP option scales needs at least one window size.")
        return config

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: Allowed ranges of the numeric options (wide, but a typo cannot hang a run).
BOUNDS: dict[str, Bound] = {"scales": Bound(1, 1000), "chunk": Bound(1, 1e9)}

PRESETS: dict[str, dict[str, Any]] = {"default": {}, "official": {}}
