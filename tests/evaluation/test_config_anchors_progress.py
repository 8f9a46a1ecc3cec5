"""Configuration validation and round trip, the published-number table, progress modes."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from anomalign.backbones import Backbone
from anomalign.errors import ConfigError
from anomalign.evaluation import BenchmarkConfig, load_anchors, run_benchmark
from anomalign.evaluation.config import parse_option
from anomalign.evaluation.progress import (
    LineProgress,
    RichProgress,
    SilentProgress,
    make_progress,
)
from anomalign.evaluation.report import METRICS
from anomalign.io import write_json
from anomalign.methods import method_spec


def test_config_round_trips_through_json(small_config: BenchmarkConfig) -> None:
    config = small_config.with_changes(categories=("synth_object",), shots=(0, 2), seeds=(3,))
    assert BenchmarkConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="nonsense"):
        BenchmarkConfig.from_dict({**config.to_dict(), "nonsense": 1})


@pytest.mark.parametrize(
    ("changes", "option"),
    [
        ({"dataset": "imagenet"}, "--dataset"),
        ({"dataset": "mvtec"}, "--root"),
        ({"methods": ()}, "--method"),
        ({"methods": ("anoclip", "anoclip")}, "--method"),
        ({"shots": (0, -2)}, "--shots"),  # -1 is FULL_SHOT
        ({"seeds": (1.5,)}, "--seeds"),
        ({"eval_size": 2}, "--eval-size"),
        ({"eval_aspect": "crop"}, "--eval-aspect"),
        ({"aupro_variant": "fast"}, "--aupro"),
        ({"overlays": -1}, "--overlays"),
        ({"method_options": {"finegrainedad": {"x": 1}}}, "--option"),
        ({"method_options": {"*": {"backbone": "x"}}}, "--option"),
    ],
)
def test_invalid_config_names_the_option(
    small_config: BenchmarkConfig, changes: dict, option: str
) -> None:
    with pytest.raises(ConfigError, match=option):
        small_config.with_changes(**changes).validate()


def test_unknown_method_and_backbone_mismatch(
    small_config: BenchmarkConfig, tiny_backbone: Backbone, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="--method finegrained-typo"):
        typo = small_config.with_changes(methods=("finegrained-typo",), method_options={})
        run_benchmark(typo, tmp_path)
    with pytest.raises(ConfigError, match="--backbone"):
        run_benchmark(
            small_config.with_changes(backbone="ViT-B-16:random"), tmp_path, backbone=tiny_backbone
        )


def test_few_shot_only_method_needs_shots(
    small_config: BenchmarkConfig, tiny_backbone: Backbone, tmp_path: Path
) -> None:
    from bench_helpers import FEWSHOT

    config = small_config.with_changes(methods=(FEWSHOT,), method_options={}, shots=(0,))
    with pytest.raises(ConfigError, match="--shots 0: test-mean-diff needs at least one"):
        run_benchmark(config, tmp_path, backbone=tiny_backbone, progress=False)


def test_option_parsing() -> None:
    assert parse_option("anoclip.smoothing=gaussian") == ("anoclip", "smoothing", "gaussian")
    assert parse_option("tta_steps=3") == ("*", "tta_steps", "3")
    assert parse_option("anoclip+.vv_depth=null") == ("anoclip+", "vv_depth", "null")
    assert parse_option("x.gaussian_sigma=4.5") == ("x", "gaussian_sigma", "4.5")
    config = BenchmarkConfig(
        dataset="synthetic",
        methods=("anoclip+",),
        method_options={"*": {"tta_steps": "3"}, "anoclip+": {"vv_depth": "null"}},
    )
    options = config.options_for(method_spec("anoclip+"), "visa")
    assert options == {"tiling": "tiles", "adapter": "linear", "tta_steps": 3, "vv_depth": None}


def test_published_anchors_are_well_formed() -> None:
    table = load_anchors()
    for anchor in table.results:
        assert anchor.source and anchor.kind in ("paper", "re-run")
        assert anchor.metrics and set(anchor.metrics) <= set(METRICS)
        assert all(0 < v <= 100 for v in anchor.metrics.values())
        assert anchor.dataset in ("mvtec", "visa", "btad", "mpdd", "elpv")
    paper = table.for_run("mvtec", 0, "anoclip+")
    assert any(
        a.metrics == {"image_auroc": 92.5, "pixel_auroc": 90.6, "pixel_aupro": 77.8} for a in paper
    )
    for shots, (i, p) in {1: (91.04, 95.49), 2: (93.66, 96.08), 4: (94.51, 96.71)}.items():
        (fgad,) = table.for_run("mvtec", shots, "finegrainedad")
        assert fgad.metrics == {"image_auroc": i, "pixel_auroc": p}
    assert table.for_run("visa", 4, "finegrainedad")[0].metrics["pixel_auroc"] == 97.54
    assert any(s.ms_per_image == 117.48 for s in table.speed_for("anoclip+"))
    winclip = [a for a in table.context("mvtec", 0) if a.method == "WinCLIP"]
    assert winclip[0].metrics["pixel_aupro"] == 64.6


def test_published_numbers_appear_beside_ours(tmp_path: Path) -> None:
    """A report for an MVTec run lists the paper rows next to 'this run'."""
    from anomalign.evaluation.report import render_markdown, summarize_runs

    run = {
        "anomalign_version": "0",
        "config": {"shots": [0], "seeds": [0]},
        "dataset": {
            "name": "mvtec",
            "layout": "mvtec",
            "root": "/d",
            "categories": [],
            "test_images": {},
        },
        "environment": {"device": "cpu", "device_name": "cpu", "precision": "fp32", "torch": "x"},
        "backbone": {"backbone": "ViT-B-16-plus-240:laion400m_e32"},
        "methods": {"anoclip+": {"eval_size": 240, "eval_aspect": "squash"}},
        "metric_variants": {},
        "plan": {
            "units": [{"method": "anoclip+", "shots": 0, "file": "u.json", "hash": "h"}],
            "notes": [],
        },
    }
    write_json(tmp_path / "config.json", run)
    text = render_markdown(run, summarize_runs(run, []), ["u.json"], [])
    section = text.split("## Published numbers beside ours")[1]
    assert "| paper: AnoVL / AnoCLIP | 92.5 |" in section
    assert "| re-run: AnoVL / AnoCLIP (official code, re-run) | 92.2 |" in section
    assert "| **this run** |" in section and "WinCLIP [training-free]" in section
    assert "Incomplete run" in text and "WARNING" not in text


def test_progress_modes(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(make_progress(False), SilentProgress)
    monkeypatch.setenv("CI", "true")
    assert isinstance(make_progress(None), LineProgress)
    monkeypatch.delenv("CI")
    # pytest captures stderr, which is not a terminal: plain lines, no bars.
    assert isinstance(make_progress(None), LineProgress)
    assert isinstance(make_progress(True), RichProgress)
    stream = io.StringIO()
    lines = LineProgress(stream)
    lines.start(3, 1)
    lines.start_unit(2, "anoclip 0-shot · bottle", 10)
    lines.advance(10)
    lines.finish_unit(2, "anoclip 0-shot · bottle", "I-AUROC 90.0")
    assert stream.getvalue().splitlines() == [
        "benchmark: 3 units (1 already finished, resuming)",
        "[2/3] anoclip 0-shot · bottle: I-AUROC 90.0",
    ]
    assert "\x1b" not in stream.getvalue() and "\r" not in stream.getvalue()
