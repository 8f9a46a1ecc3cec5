"""AnoCLIP options and its two presets (anoclip.md "Defaults for this project").

``official`` reproduces the official code, quirks included; ``default`` fixes three
behaviours a user predicting on their own images would not want: a fresh optimizer
(and random stream) per image, grammatical prompt text, and the grayscale view taken
before normalisation. Every other option keeps the official value in both presets.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from anomalign.errors import ConfigError
from anomalign.methods.options import Bound, check_choices, check_numbers, config_from_preset

Preset = Literal["official", "default"]


@dataclass(frozen=True)
class AnoCLIPConfig:
    """Every switch of AnoCLIP / AnoCLIP+; defaults are the official code's values.

    Attributes:
        preset: the preset these values started from (recorded in results).
        vv_depth: final blocks with the V-V path (None = all, official; 6 = CLIP Surgery).
        logit_scale: multiplier of the cosines before the softmax (1 = official; 100 = CLIP).
        smoothing: "mean3" (official 3x3 replicate-padded mean on the patch grid), "mean5",
            "gaussian" (sigma ``gaussian_sigma`` on the full-size map) or "none".
        image_score: "views22" (mean over the 22 augmented views, official) or "single".
        grayscale_on_raw: take the grayscale view before normalisation (default preset).
        grammatical_prompts: "an abnormal ..." instead of the verbatim "a abnormal ...".
        tiling: "squash" (resize to a square) or "tiles" (square tiles along the long side,
            overlaps averaged: the official VisA handling).
        interpolation: image resize filter, "bilinear" (torchvision ``Resize``'s default,
            which the official scripts use) or "bicubic" (open_clip's transforms).
        tta: run the test-time adapter (AnoCLIP+).
        adapter: "text" (TextAdapter on the prompt-embedding basis) or "linear".
        tta_steps, tta_lr, tta_weight_decay, noise_sigma, hard_loss_weight: TTA settings.
        optimizer_scope: "category" (one AdamW per category whose state carries across
            images, official) or "image" (fresh optimizer and random stream per image).
        tta_loss_order: how the TTA loss is evaluated: "official" (the official
            ``loss_func``: entropy and hard terms averaged separately, the hard term a
            masked sum over both states) or "fused" (one mean of the summed terms). The
            same in exact arithmetic, one float32 rounding step apart.
        seed: seed of the TTA random stream (adapter init and noise).
    """

    preset: Preset = "official"
    vv_depth: int | None = None
    logit_scale: float = 1.0
    smoothing: Literal["mean3", "mean5", "gaussian", "none"] = "mean3"
    gaussian_sigma: float = 4.0
    image_score: Literal["views22", "single"] = "views22"
    grayscale_on_raw: bool = False
    grammatical_prompts: bool = False
    tiling: Literal["squash", "tiles"] = "squash"
    interpolation: Literal["bilinear", "bicubic"] = "bilinear"
    tta: bool = False
    adapter: Literal["text", "linear"] = "text"
    tta_steps: int = 5
    tta_lr: float = 1e-3
    tta_weight_decay: float = 0.01
    noise_sigma: float = 0.055
    hard_loss_weight: float = 0.5
    optimizer_scope: Literal["category", "image"] = "category"
    tta_loss_order: Literal["official", "fused"] = "official"
    seed: int = 111

    @classmethod
    def from_preset(cls, preset: Preset = "default", **overrides: Any) -> AnoCLIPConfig:
        """Start from a preset and apply named overrides (unknown names are an error)."""
        config = config_from_preset(cls, "AnoCLIP", PRESETS, preset, overrides)
        config.validate()
        return config

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the option when a value is out of range."""
        check_choices(self, "AnoCLIP")
        if isinstance(self.tta_steps, int) and self.tta_steps < 0:
            raise ConfigError(f"AnoCLIP option tta_steps must be >= 0, got {self.tta_steps}.")
        if isinstance(self.logit_scale, float | int) and self.logit_scale <= 0:
            raise ConfigError(f"AnoCLIP option logit_scale must be > 0, got {self.logit_scale}.")
        check_numbers(self, "AnoCLIP", BOUNDS)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: Allowed ranges of the numeric options (wide, but a typo cannot hang a run).
BOUNDS: dict[str, Bound] = {
    "vv_depth": Bound(1, 1000),
    "logit_scale": Bound(0, 1e4, open_low=True),
    "gaussian_sigma": Bound(0, 1000),
    "tta_steps": Bound(0, 1000),
    "tta_lr": Bound(0, 10, open_low=True),
    "tta_weight_decay": Bound(0, 10),
    "noise_sigma": Bound(0, 10),
    "hard_loss_weight": Bound(0, 1000),
    "seed": Bound(0, 2**63 - 1),
}

#: What each preset changes from the official values.
PRESETS: dict[str, dict[str, Any]] = {
    "official": {},
    "default": {
        "optimizer_scope": "image",
        "grammatical_prompts": True,
        "grayscale_on_raw": True,
        "tta_loss_order": "fused",
    },
}
