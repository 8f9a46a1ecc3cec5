"""Both methods in one benchmark run: AnoCLIP (zero-shot) beside FineGrainedAD (few-shot)."""

from __future__ import annotations

import numpy as np
from bench_helpers import SMALL

from anomalign.backbones import Backbone
from anomalign.evaluation import BenchmarkConfig, run_benchmark
from anomalign.io import read_csv, read_json
from anomalign.metrics import image_metrics


def test_anoclip_and_finegrainedad_in_one_report(tiny_backbone: Backbone, tmp_path) -> None:
    config = BenchmarkConfig(
        dataset="synthetic",
        methods=("anoclip", "finegrainedad"),
        shots=(0, 1),
        seeds=(0,),
        backbone="anomalign-tiny:random",
        eval_size=64,
        overlays=1,
        method_options={
            "anoclip": {"image_score": "single"},
            "finegrainedad": {
                "memory_blocks": (1, 2),
                "seg_epochs": 2,
                "cls_epochs": 2,
                "cluster_tiles": 2,
            },
        },
        synthetic=SMALL,
    )
    result = run_benchmark(config, tmp_path, backbone=tiny_backbone, progress=False)
    computed = sorted({(k.method, k.shots) for k in result.computed})
    assert computed == [("anoclip", 0), ("finegrainedad", 1)]
    rows = read_json(tmp_path / "metrics" / "per_category.json")
    fgad = [r for r in rows if r["method"] == "finegrainedad"]
    assert len(fgad) == 2 and all(r["shots"] == 1 for r in fgad)
    report = (tmp_path / "report.md").read_text()
    assert "finegrainedad" in report and "anoclip" in report
    # The stored image metrics equal the metrics module on the saved scores.
    stored = {(r["method"], r["category"]): r for r in rows}
    for unit in result.units:
        saved = read_csv(tmp_path / unit["files"]["scores"])
        labels = np.array([int(r["label"]) for r in saved])
        scores = np.array([float(r["score"]) for r in saved], dtype=np.float32)
        record = stored[(unit["method"], unit["category"])]
        assert record["image_auroc"] == image_metrics(labels, scores).auroc
