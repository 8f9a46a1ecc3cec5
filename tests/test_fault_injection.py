"""SIGKILL at random points, then resume: the outputs are as if nothing had happened.

The runs are forked from a forkserver that has imported anomalign, torch and open_clip
once, so a killed run costs no start-up and the kills land anywhere in the work: while
decoding, predicting, writing a map, appending a row or building the report.
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from anomalign.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::anomalign.backbones.UntrainedBackboneWarning")

KILLS = int(os.environ.get("ANOMALIGN_FAULT_KILLS", "10"))
PRELOAD = ["anomalign.cli", "anomalign.inspection", "anomalign.evaluation", "torch", "open_clip"]
TINY = "anomalign-tiny:random"


@pytest.fixture(scope="module")
def forkserver() -> multiprocessing.context.BaseContext:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def _timed_run(context: Any, argv: list[str]) -> float:
    started = time.monotonic()
    process = context.Process(target=main, args=(argv,))
    process.start()
    process.join(300)
    assert process.exitcode == 0, f"run failed: {argv}"
    return time.monotonic() - started


def _kill_repeatedly(context: Any, argv: list[str], full_seconds: float, seed: int) -> int:
    """Start ``argv`` and SIGKILL it after a random delay, until ``KILLS`` runs died. The
    delays are drawn from a window that starts at a whole run and halves whenever a run
    finishes first (resumed runs have less left to do)."""
    rng = random.Random(seed)
    window = full_seconds
    kills = attempts = 0
    while kills < KILLS and attempts < 4 * KILLS:
        attempts += 1
        process = context.Process(target=main, args=(argv,))
        process.start()
        process.join(rng.uniform(0.05, 1.0) * window)
        if process.is_alive():
            os.kill(process.pid, signal.SIGKILL)
            kills += 1
        else:
            window /= 2
        process.join(60)
    return kills


def _strict(text: str) -> Any:
    def refuse(token: str) -> Any:
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def _temporaries(folder: Path) -> list[str]:
    return sorted(
        str(p) for p in folder.rglob("*") if p.name.endswith(".tmp") or ".partial-" in p.name
    )


def _folder_of_images(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        pixels = rng.integers(0, 255, (24 + index % 5, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img_{index:02d}.png")
    return folder


def test_predict_survives_random_sigkills(forkserver: Any, tmp_path: Path) -> None:
    images = _folder_of_images(tmp_path / "images", 40)
    bundle = tmp_path / "det.anomalign"
    fit = ["fit", "--method", "anoclip", "--backbone", TINY, "--option", "image_score=single",
           "--category", "synth_texture", "--threshold", "0.5", "--out", str(bundle)]  # fmt: skip
    assert main(fit) == 0
    predict = ["predict", str(bundle), str(images), "--batch-size", "2", "--grid", "4"]
    reference = tmp_path / "reference"
    full = _timed_run(forkserver, [*predict, "--out", str(reference)])
    out = tmp_path / "out"
    kills = _kill_repeatedly(forkserver, [*predict, "--out", str(out)], full, seed=13)
    assert kills >= KILLS
    assert main([*predict, "--out", str(out)]) == 0

    lines = (out / "summary.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [_strict(line) for line in lines]  # every line is strict JSON, none torn
    ok = [r for r in rows if r["status"] == "ok"]
    assert sorted(r["image"] for r in ok) == sorted(str(p.resolve()) for p in images.iterdir())
    with (out / "summary.csv").open(encoding="utf-8") as stream:
        table = list(csv.DictReader(stream))
    assert len(table) == 40 and len({r["image"] for r in table}) == 40
    assert {r["status"] for r in table} == {"ok"}
    _strict((out / "summary.json").read_text(encoding="utf-8"))
    expected = {r["image"]: r for r in map(_strict, (reference / "summary.jsonl").open())}
    for row in ok:
        amap = np.asarray(Image.open(out / row["map"]))
        assert amap.dtype == np.uint16 and amap.shape == (row["height"], row["width"])
        Image.open(out / row["overlay"]).verify()
        assert row["score"] == pytest.approx(expected[row["image"]]["score"], abs=1e-6)
    assert _temporaries(out) == []


def test_benchmark_survives_random_sigkills(forkserver: Any, tmp_path: Path) -> None:
    argv = ["benchmark", "--dataset", "synthetic", "--backbone", TINY, "--synth-image-size",
            "48", "--synth-counts", "3,2,2", "--eval-size", "32", "--option",
            "image_score=single", "--method", "anoclip", "--overlays", "1", "--quiet"]  # fmt: skip
    reference = tmp_path / "reference"
    full = _timed_run(forkserver, [*argv, "--out", str(reference)])
    out = tmp_path / "out"
    kills = _kill_repeatedly(forkserver, [*argv, "--out", str(out)], full, seed=7)
    assert kills >= KILLS
    assert main([*argv, "--out", str(out)]) == 0

    units = sorted(out.glob("units/**/*.json"))
    assert [p.relative_to(out) for p in units] == [
        p.relative_to(reference) for p in sorted(reference.glob("units/**/*.json"))
    ]
    for path in [*units, out / "config.json", *out.glob("metrics/*.json")]:
        _strict(path.read_text(encoding="utf-8"))
    metrics = _strict((out / "metrics" / "per_category.json").read_text(encoding="utf-8"))
    wanted = _strict((reference / "metrics" / "per_category.json").read_text(encoding="utf-8"))
    assert [m["metrics"] for m in metrics] == [m["metrics"] for m in wanted]
    for overlay in out.glob("overlays/**/*.png"):
        Image.open(overlay).verify()
    assert _temporaries(out) == []
