"""Few-shot runs: one unit per (shots, seed), recorded reference files, mean ± std over seeds."""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np
import pytest
from bench_helpers import FEWSHOT, SMALL

from anomalign.backbones import Backbone
from anomalign.data import load_dataset
from anomalign.data.fewshot import shot_record
from anomalign.evaluation import BenchmarkConfig, run_benchmark
from anomalign.evaluation.report import fmt_stat, pct
from anomalign.io import read_csv, read_json


@pytest.fixture(scope="module")
def fewshot_run(tiny_backbone: Backbone, tmp_path_factory: pytest.TempPathFactory):
    config = BenchmarkConfig(
        dataset="synthetic",
        methods=("anoclip", FEWSHOT),
        shots=(0, 1, 2),
        seeds=(0, 1, 2),
        backbone="anomalign-tiny:random",
        eval_size=32,
        overlays=1,
        method_options={"anoclip": {"image_score": "single"}},
        synthetic=SMALL,
    )
    out = tmp_path_factory.mktemp("fewshot")
    return config, out, run_benchmark(config, out, backbone=tiny_backbone, progress=False)


def test_units_per_shots_and_seed_with_recorded_reference_files(fewshot_run) -> None:
    _, out, result = fewshot_run
    fewshot = [k for k in result.computed if k.method == FEWSHOT]
    assert {(k.shots, k.seed) for k in fewshot} == {(k, s) for k in (1, 2) for s in (0, 1, 2)}
    assert len(fewshot) == 2 * 3 * 2  # shots x seeds x categories
    run = read_json(out / "config.json")
    assert f"{FEWSHOT} needs reference images: 0 shots skipped." in run["plan"]["notes"]
    dataset = load_dataset(run["dataset"]["root"])
    for unit in result.units:
        if unit["method"] != FEWSHOT:
            assert unit["shot_files"] == [] and unit["fit"]["images"] == 0
            continue
        expected = shot_record(
            dataset.shots(unit["category"], unit["shots"], unit["seed"]), dataset.root
        )
        assert unit["shot_files"] == expected
        assert run["shot_files"][unit["category"]][str(unit["shots"])][str(unit["seed"])] == (
            expected
        )
        assert unit["fit"]["images"] == unit["shots"]
        assert (out / unit["files"]["scores"]).is_file()
    # One overlay figure per (method, shots, category), from the first seed.
    overlays = sorted(p.relative_to(out).as_posix() for p in out.glob("overlays/**/*.png"))
    assert len(overlays) == 2 * 3  # anoclip k0 + few-shot k1, k2; two categories each


def test_mean_and_std_over_seeds(fewshot_run) -> None:
    _, out, result = fewshot_run
    summary = {(s["method"], s["shots"]): s for s in read_json(out / "metrics/summary.json")}
    report = (out / "report.md").read_text()
    for shots in (1, 2):
        units = [u for u in result.units if u["method"] == FEWSHOT and u["shots"] == shots]
        per_seed = {}
        for seed in (0, 1, 2):
            values = [u["metrics"]["pixel"]["auroc"] for u in units if u["seed"] == seed]
            per_seed[seed] = statistics.fmean(values)
        stat = summary[(FEWSHOT, shots)]["mean"]["pixel_auroc"]
        assert stat["n"] == 3
        assert stat["mean"] == pytest.approx(statistics.fmean(per_seed.values()))
        assert stat["std"] == pytest.approx(statistics.stdev(per_seed.values()))
        assert stat["std"] > 0, "different seeds pick different references"
        row = f"| {FEWSHOT} | {shots} | 0,1,2 | "
        line = next(line for line in report.splitlines() if line.startswith(row))
        assert f"{pct(stat['mean'])} ± {100 * stat['std']:.1f}" in line
        # Per-category rows aggregate one category over the seeds.
        texture = [
            u["metrics"]["pixel"]["auroc"] for u in units if u["category"] == "synth_texture"
        ]
        cat = summary[(FEWSHOT, shots)]["categories"]["synth_texture"]["pixel_auroc"]
        assert cat["mean"] == pytest.approx(statistics.fmean(texture))
        assert cat["std"] == pytest.approx(statistics.stdev(texture))
    rows = read_csv(out / "metrics/summary.csv")
    mean_row = next(
        r for r in rows if r["method"] == FEWSHOT and r["shots"] == "2" and r["category"] == "mean"
    )
    assert float(mean_row["pixel_auroc"]) == pytest.approx(
        summary[(FEWSHOT, 2)]["mean"]["pixel_auroc"]["mean"]
    )
    assert mean_row["n_seeds"] == "3"


def test_zero_shot_row_has_no_std(fewshot_run) -> None:
    _, out, _ = fewshot_run
    summary = {(s["method"], s["shots"]): s for s in read_json(out / "metrics/summary.json")}
    stat = summary[("anoclip", 0)]["mean"]["image_auroc"]
    assert stat["std"] is None and stat["n"] == 1
    from anomalign.evaluation.report import Stat

    assert fmt_stat(Stat(stat["mean"], None, 1)) == pct(stat["mean"])
    assert Path(out / "report.md").read_text().count("## Comparison") == 1


def test_maps_of_another_size_are_brought_to_the_evaluation_size(
    tiny_backbone: Backbone, tmp_path: Path
) -> None:
    config = BenchmarkConfig(
        dataset="synthetic",
        methods=(FEWSHOT,),
        shots=(1,),
        backbone="anomalign-tiny:random",
        eval_size=48,
        save_maps=True,
        method_options={FEWSHOT: {"ignore_output_size": True}},
        synthetic=SMALL,
        categories=("synth_object",),
    )
    (unit,) = run_benchmark(config, tmp_path, backbone=tiny_backbone, progress=False).units
    assert unit["eval"]["map_sizes"] == [[48, 48]]
    with np.load(tmp_path / unit["files"]["maps"]) as maps:
        assert maps["00000"].shape == (48, 48)
    assert unit["metrics"]["pixel"]["n_pos"] + unit["metrics"]["pixel"]["n_neg"] == 6 * 48 * 48


def test_test_method_round_trips_through_a_bundle(tiny_backbone, tmp_path) -> None:
    from bench_helpers import MeanDifference

    from anomalign.bundles import load_bundle, save_bundle

    images = [np.full((40, 40, 3), v, np.uint8) for v in (10, 200)]
    detector = MeanDifference(tiny_backbone).fit(images[:1])
    path = save_bundle(detector.to_bundle(), tmp_path / "m.anomalign")
    restored = MeanDifference.from_bundle(load_bundle(path), backbone=tiny_backbone)
    np.testing.assert_array_equal(restored.predict(images).maps, detector.predict(images).maps)
