"""The Ray engine on a local Ray (num_cpus=2): equal to the local engine, errors, resume,
Parquet schema, detector maps. Deselect with ``-m 'not ray'``."""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from ray_helpers import make_inputs

import anomalign
from anomalign.cli import main
from anomalign.distributed import SCHEMA, decode_map, predict_dataset, read_results
from anomalign.inspection import predict_folder, read_rows
from anomalign.methods import load_detector

pytestmark = pytest.mark.ray
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ["ANOMALIGN_RAY_PROGRESS"] = "0"
ray = pytest.importorskip("ray")


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    """One local Ray for the module: 2 CPUs, no dashboard, nothing sent anywhere."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def first_run(ray_synth: Path, bundle_a: Path, tmp_path_factory) -> dict:
    """The same folder through the local engine and the Ray engine (batches of 4)."""
    root = tmp_path_factory.mktemp("ray-engine")
    folder = make_inputs(ray_synth, root / "in")
    local = predict_folder(load_detector(bundle_a), [folder], root / "local", batch_size=4)
    run = predict_dataset(bundle_a, [folder], root / "ray", batch_size=4, workers=1)
    return {"root": root, "folder": folder, "local": local, "run": run}


def test_ray_equals_the_local_engine_bit_for_bit(first_run: dict) -> None:
    run, root = first_run["run"], first_run["root"]
    assert (run.total, run.predicted, run.resumed, len(run.errors)) == (11, 9, 0, 2)
    rows = {r["input"]: r for r in read_results(root / "ray").to_pylist()}
    local_rows = {r["image"]: r for r in read_rows(root / "local")}
    assert set(rows) == set(local_rows)
    for image, expected in local_rows.items():
        row = rows[image]
        assert row["status"] == expected["status"]
        if expected["status"] != "ok":
            continue
        assert np.float32(row["score"]) == np.float32(expected["score"])  # bit for bit
        assert row["decision"] == expected["decision"]
        local_png = root / "local" / expected["map"]
        assert row["map_png"] == local_png.read_bytes()  # the same PNG, byte for byte
        decoded = np.asarray(Image.open(io.BytesIO(row["map_png"])))
        assert np.array_equal(np.asarray(Image.open(local_png)), decoded)
        assert decode_map(row).shape == (expected["height"], expected["width"])


def test_broken_files_are_error_rows(first_run: dict) -> None:
    errors = dict(first_run["run"].errors)
    assert {Path(p).name for p in errors} == {"garbage.png", "truncated.png"}
    assert all("ImageReadError" in message for message in errors.values())
    table = read_results(first_run["root"] / "ray")
    broken = [r for r in table.to_pylist() if r["status"] == "error"]
    assert all(r["score"] is None and r["map_png"] is None and r["error"] for r in broken)


def test_parquet_reads_back_with_the_documented_schema(first_run: dict) -> None:
    out = first_run["root"] / "ray"
    table = pq.read_table(out)  # plain pyarrow: _anomalign.json is not data
    assert table.num_rows == 11
    assert table.schema.remove_metadata().equals(SCHEMA.remove_metadata())
    assert (out / "_anomalign.json").is_file()
    assert set(table["anomalign_version"].to_pylist()) == {anomalign.__version__}


def test_resume_skips_finished_work_and_redoes_changed_images(
    first_run: dict, bundle_a: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, folder = first_run["root"], first_run["folder"]
    out = root / "ray"
    shutil.copy(folder / "good" / "000.png", folder / "good" / "new.png")  # new input
    shutil.copy(folder / "crack" / "000.png", folder / "hole" / "000.png")  # changed content
    args = ["predict", str(bundle_a), str(folder), "--out", str(out), "--engine", "ray"]
    assert main([*args, "--batch-size", "4"]) == 1  # the two broken files still fail
    printed = capsys.readouterr().out
    assert "12 image(s): 2 predicted, 8 already done (resumed), 2 failed" in printed
    latest = read_results(out)
    assert latest.num_rows == 12  # one current row per input
    assert read_results(out, latest=False).num_rows == 11 + 4
    rows = {r["input"]: r for r in latest.to_pylist()}
    changed = rows[str((folder / "hole" / "000.png").resolve())]
    crack = rows[str((folder / "crack" / "000.png").resolve())]
    assert changed["content_hash"] == crack["content_hash"]


def test_detector_map_groups_images_by_detector(
    first_run: dict, bundle_a: Path, bundle_b: Path, tmp_path: Path
) -> None:
    folder = first_run["folder"]
    table = tmp_path / "map.csv"
    table.write_text(f"pattern,detector\n{folder}/good,{bundle_b}\n{folder}/cr*/*.png,{bundle_b}\n")
    run = predict_dataset(
        bundle_a, [folder], tmp_path / "out", detector_map=table, workers=2, maps=False
    )
    assert run.total == 12 and run.predicted == 10
    rows = read_results(tmp_path / "out").to_pylist()
    fingerprints = {load_detector(b).fingerprint(): str(b) for b in (bundle_a, bundle_b)}
    for row in rows:
        relative = Path(row["input"]).relative_to(folder.resolve()).parts
        expected = bundle_b if relative[0] in ("good", "crack") else bundle_a
        assert row["detector"] == str(expected)
        assert fingerprints[row["detector_fingerprint"]] == str(expected)
        assert row["map_png"] is None  # --no-maps
