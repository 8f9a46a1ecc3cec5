"""End to end on synthetic data with the tiny backbone: files, report numbers, overlays."""

from __future__ import annotations

import re

import numpy as np
import pytest
from bench_helpers import SMALL
from PIL import Image

from anomalign.backbones import Backbone
from anomalign.data import load_dataset
from anomalign.data.transforms import resize_mask
from anomalign.evaluation import BenchmarkConfig, run_benchmark
from anomalign.evaluation.report import pct
from anomalign.io import read_csv, read_json
from anomalign.metrics import image_metrics, pixel_metrics

IMAGE_KEYS = ("auroc", "ap", "aupr", "f1_max")
PIXEL_KEYS = ("auroc", "ap", "f1_max", "aupro")


@pytest.fixture(scope="module")
def finished_run(tiny_backbone: Backbone, tmp_path_factory: pytest.TempPathFactory):
    """Both AnoCLIP variants with their default (22-view) image score, maps saved."""
    config = BenchmarkConfig(
        dataset="synthetic",
        methods=("anoclip", "anoclip+"),
        shots=(0, 1),
        seeds=(0, 1),
        backbone="anomalign-tiny:random",
        eval_size=64,
        overlays=3,
        save_maps=True,
        synthetic=SMALL,
    )
    out = tmp_path_factory.mktemp("bench")
    result = run_benchmark(config, out, backbone=tiny_backbone, progress=False)
    return config, out, result


def _markdown_rows(report: str, heading: str) -> dict[str, list[str]]:
    """First cell -> the other cells, for the table under ``heading``."""
    section = report.split(heading, 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        if line.startswith("| ") and not line.startswith("| ---"):
            cells = [c.strip().strip("*") for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def test_every_unit_and_file_is_written(finished_run) -> None:
    _, out, result = finished_run
    # Zero-shot methods run once per category whatever the shots and seeds.
    assert sorted((k.method, k.shots, k.seed) for k in result.computed) == [
        ("anoclip", 0, None),
        ("anoclip", 0, None),
        ("anoclip+", 0, None),
        ("anoclip+", 0, None),
    ]
    assert not result.reused
    for name in ("report.md", "config.json", "metrics/per_category.csv", "metrics/summary.csv"):
        assert (out / name).is_file(), name
    assert (out / "metrics" / "per_category.json").is_file()
    assert not list(out.rglob("*.tmp")), "no temporary file may be left behind"
    config = read_json(out / "config.json")
    assert config["backbone"]["backbone"] == "anomalign-tiny:random"
    assert config["methods"]["anoclip+"]["protocol"]["fixed"] == {"tta": True}
    assert config["methods"]["anoclip+"]["protocol"]["learning"] == "zero-shot"
    plus = [u for u in result.units if u["method"] == "anoclip+"]
    assert plus and all(u["method_info"]["options"]["tta"] is True for u in plus)
    assert config["methods"]["anoclip"]["eval_size"] == 64
    assert config["metric_variants"]["pixel_aupro"] == "mvtec@0.3"
    assert config["anomalign_version"] and config["config"]["seeds"] == [0, 1]
    assert any("anoclip uses no reference images" in n for n in config["plan"]["notes"])


def test_report_numbers_equal_the_metrics_module_on_saved_scores(finished_run) -> None:
    _, out, result = finished_run
    stored = {(r["method"], r["category"]): r for r in read_json(out / "metrics/per_category.json")}
    report = (out / "report.md").read_text()
    dataset = load_dataset(read_json(out / "config.json")["dataset"]["root"])
    root = dataset.root
    for unit in result.units:
        rows = read_csv(out / unit["files"]["scores"])
        labels = np.array([int(r["label"]) for r in rows])
        scores = np.array([float(r["score"]) for r in rows], dtype=np.float32)
        image = image_metrics(labels, scores)
        maps_file = np.load(out / unit["files"]["maps"])
        maps = np.stack([maps_file[f"{i:05d}"] for i in range(len(rows))])
        by_path = {s.image_path: s for s in dataset}
        masks = np.stack(
            [resize_mask(by_path[root / r["image"]].load_mask(), maps.shape[1:]) for r in rows]
        )
        pixel = pixel_metrics(maps, masks, aupro_variant="mvtec")
        record = stored[(unit["method"], unit["category"])]
        for key in IMAGE_KEYS:
            assert record[f"image_{key}"] == getattr(image, key)
        for key in PIXEL_KEYS:
            assert record[f"pixel_{key}"] == pytest.approx(getattr(pixel, key), abs=1e-12)

        # The Markdown per-category table shows the same numbers, rounded to 0.1 %.
        table = _markdown_rows(report, f"## {unit['method']}, 0-shot: per category")
        cells = table[unit["category"]]
        assert cells[0] == pct(image.auroc) and cells[1] == pct(image.ap)
        assert cells[3] == pct(pixel.auroc) and cells[6] == pct(pixel.aupro)


def test_comparison_table_has_both_methods_and_category_means(finished_run) -> None:
    _, out, result = finished_run
    report = (out / "report.md").read_text()
    assert report.startswith("# anomalign benchmark: synthetic")
    assert "WARNING: untrained backbone" in report.split("## ", 1)[0]
    comparison = _markdown_rows(report, "## Comparison (mean over categories, %)")
    assert set(comparison) >= {"anoclip", "anoclip+"}
    for method in ("anoclip", "anoclip+"):
        units = [u for u in result.units if u["method"] == method]
        mean = np.mean([u["metrics"]["image"]["auroc"] for u in units])
        pixel = np.mean([u["metrics"]["pixel"]["aupro"] for u in units])
        shots, seeds, i_auroc, *_, aupro = comparison[method]
        assert (shots, seeds) == ("0", "–")
        assert i_auroc == pct(mean) and aupro == pct(pixel)
    summary = read_json(out / "metrics/summary.json")
    assert {s["method"] for s in summary} == {"anoclip", "anoclip+"}
    assert all(s["complete"] and s["mean"]["image_auroc"]["std"] is None for s in summary)
    assert "## Timing and memory" in report and "ms/image" in report


def test_overlays_are_written_per_category(finished_run) -> None:
    _, out, result = finished_run
    report = (out / "report.md").read_text()
    for unit in result.units:
        path = out / unit["files"]["overlay"]
        with Image.open(path) as image:
            assert image.mode == "RGB" and image.width > image.height / 3
        assert f"]({unit['files']['overlay']})" in report
    assert re.search(r"!\[synth_texture\]\(overlays/anoclip\+/k0/synth_texture\.png\)", report)
