"""Method options are type- and range-checked, so a typo cannot hang a run."""

from __future__ import annotations

import pytest

from anomalign.errors import ConfigError
from anomalign.methods.anoclip import AnoCLIPConfig
from anomalign.methods.finegrainedad import FineGrainedADConfig
from anomalign.methods.patchcore.config import PatchCoreConfig
from anomalign.methods.winclip.config import WinCLIPConfig


@pytest.mark.parametrize(
    ("option", "value", "needle"),
    [
        ("tta_steps", 10**15, "out of range"),
        ("tta_steps", 1e15, "expected a whole number"),
        ("tta_steps", "5", "expected a whole number"),
        ("tta_lr", float("nan"), "finite"),
        ("tta_lr", 0.0, r"\(0, 10\]"),
        ("noise_sigma", float("inf"), "finite"),
        ("gaussian_sigma", -1.0, "out of range"),
        ("grammatical_prompts", "yes", "true or false"),
        ("vv_depth", 0, "out of range"),
    ],
)
def test_anoclip_option_out_of_bounds_is_a_config_error(option, value, needle) -> None:
    with pytest.raises(ConfigError, match=rf"AnoCLIP option {option}=.*{needle}"):
        AnoCLIPConfig.from_preset("default", **{option: value})


@pytest.mark.parametrize(
    ("option", "value", "needle"),
    [
        ("seg_epochs", 10**9, "out of range"),
        ("seg_epochs", 2.5, "whole number"),
        ("memory_blocks", (1, "x"), "whole number"),
        ("memory_blocks", (0, 3), "out of range"),
        ("memory_blocks", 3, "expected a list"),
        ("momentum", 1.5, "out of range"),
        ("lr", float("nan"), "finite"),
        ("n_ctx", 0, "out of range"),
    ],
)
def test_finegrainedad_option_out_of_bounds_is_a_config_error(option, value, needle) -> None:
    with pytest.raises(ConfigError, match=rf"FineGrainedAD option {option}=.*{needle}"):
        FineGrainedADConfig.from_preset("default", **{option: value})


@pytest.mark.parametrize(
    ("config", "label", "option", "value", "needle"),
    [
        (PatchCoreConfig, "PatchCore", "sigma", float("nan"), "finite"),
        (PatchCoreConfig, "PatchCore", "coreset_ratio", 0.0, r"\(0, 1\]"),
        (PatchCoreConfig, "PatchCore", "num_neighbors", 2.5, "whole number"),
        (PatchCoreConfig, "PatchCore", "blocks", (0, 3), "out of range"),
        (PatchCoreConfig, "PatchCore", "neighbourhood", 4, "odd number"),
        (PatchCoreConfig, "PatchCore", "embed_dim", "big", "whole number"),
        (WinCLIPConfig, "WinCLIP", "chunk", 0, "out of range"),
        (WinCLIPConfig, "WinCLIP", "scales", (2, 0), "out of range"),
        (WinCLIPConfig, "WinCLIP", "scales", (), "at least one"),
    ],
)
def test_baseline_option_out_of_bounds_is_a_config_error(
    config, label, option, value, needle
) -> None:
    with pytest.raises(ConfigError, match=rf"{label} option {option}.*{needle}"):
        config.from_preset("default", **{option: value})


def test_in_range_options_and_optional_none_are_accepted() -> None:
    assert AnoCLIPConfig.from_preset("default", tta_steps=20, vv_depth=None).tta_steps == 20
    assert FineGrainedADConfig.from_preset("default", memory_blocks=[2, 5]).memory_blocks == (2, 5)
    assert PatchCoreConfig.from_preset("default", coreset_max=None, sigma=0).coreset_max is None
    assert WinCLIPConfig.from_preset("default", scales=[1, 2], chunk=64).scales == (1, 2)
