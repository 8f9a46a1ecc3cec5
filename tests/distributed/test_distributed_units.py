"""The Ray engine's parts that need no Ray: inputs, detector maps, batches, rows, schema."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from ray_helpers import make_inputs

from anomalign import load_detector
from anomalign.cli import main
from anomalign.distributed import COLUMNS, SCHEMA, predict_dataset, sources
from anomalign.distributed.engine import (
    MANIFEST,
    BatchPredictor,
    DetectorInfo,
    _inspect_detectors,
    plan_batches,
    read_batches,
)
from anomalign.distributed.schema import SCHEMA_VERSION, decode_map, rows_to_table
from anomalign.errors import ConfigError, DataError

README = Path(__file__).resolve().parents[2] / "README.md"


def test_inputs_paths_and_file_uris_are_one_identity(ray_synth: Path, tmp_path: Path) -> None:
    folder = make_inputs(ray_synth, tmp_path / "in")
    (folder / ".hidden.png").write_bytes(b"x")
    (folder / "notes.txt").write_text("not an image suffix")
    by_path = [entry.identity for entry in sources.list_inputs([folder])]
    assert len(by_path) == 11 and all(Path(p).is_absolute() for p in by_path)
    assert not any(".hidden" in p or p.endswith(".txt") for p in by_path)
    listed = sources.list_inputs([f"file://{folder}", folder / "good"])
    assert [entry.identity for entry in listed] == by_path
    assert sources.read_bytes(listed[0].source) == Path(by_path[0]).read_bytes()
    inside = sources.list_inputs([folder], exclude=str((folder / "good").resolve()))
    assert len(inside) == 8
    with pytest.raises(DataError, match="does not exist"):
        sources.list_inputs([tmp_path / "missing"])


def test_detector_map_globs_folders_and_first_match(tmp_path: Path) -> None:
    table = tmp_path / "maps" / "map.csv"
    table.parent.mkdir()
    table.write_text(
        "pattern,detector\n"
        "# a comment line\n"
        "../data/line1/bottle,bottle.anomalign\n"
        "../data/*/screw_*.png,/models/screw.anomalign\n"
        "s3://plant/cable/*,s3://models/cable.anomalign\n"
        "../data,fallback.anomalign\n"
    )
    rules = sources.read_detector_map(table)
    data = (tmp_path / "data").resolve()
    identities = [
        str(data / "line1/bottle/a.png"),
        str(data / "line1/bottle-other/screw_1.png"),
        "s3://plant/cable/x/1.png",
        str(data / "elsewhere.png"),
        "/other/place.png",
    ]
    assigned = sources.assign_detectors(identities, rules, default=None)
    assert assigned == [
        str((tmp_path / "maps" / "bottle.anomalign").resolve()),
        "/models/screw.anomalign",
        "s3://models/cable.anomalign",
        str((tmp_path / "maps" / "fallback.anomalign").resolve()),
        None,
    ]
    table.write_text("only-one-cell\n")
    with pytest.raises(ConfigError, match="row 1"):
        sources.read_detector_map(table)
    with pytest.raises(ConfigError, match="does not exist"):
        sources.read_detector_map(tmp_path / "none.csv")


def _infos(bundles: dict[str, str]) -> dict[str, DetectorInfo]:
    return {b: DetectorInfo(b, fp, None, True, {}) for b, fp in bundles.items()}


def test_batches_group_by_detector_in_listed_order() -> None:
    inputs = [sources.Input(f"/d/{i}.png", f"/d/{i}.png".encode()) for i in range(7)]
    assigned = ["a", "b", "a", "a", None, "b", "a"]
    finished = {("/d/2.png", "fa"): "hash2", ("/d/1.png", "other"): "x"}
    plan = plan_batches(inputs, assigned, _infos({"a": "fa", "b": "fb"}), finished, 3)
    rows = plan.to_pylist()
    assert [(r["detector"], r["inputs"]) for r in rows] == [
        ("a", ["/d/0.png", "/d/2.png", "/d/3.png"]),
        ("a", ["/d/6.png"]),
        ("b", ["/d/1.png", "/d/5.png"]),
        (None, ["/d/4.png"]),
    ]
    assert rows[0]["done"] == ["", "hash2", ""] and rows[2]["done"] == ["", ""]
    assert [r["batch"] for r in rows] == [0, 1, 2, 3]


def test_rows_have_the_schema_and_per_image_semantics(
    ray_synth: Path, bundle_a: Path, bundle_b: Path, tmp_path: Path
) -> None:
    """read_batches + BatchPredictor in this process: errors, NaN, one detector at a time."""
    folder = make_inputs(ray_synth, tmp_path / "in")
    listed = sources.list_inputs([folder])
    identities = [entry.identity for entry in listed]
    infos = _inspect_detectors([str(bundle_a), str(bundle_b)], None, str(tmp_path / "cache"))
    done = {(identities[1], infos[str(bundle_a)].fingerprint): "not-the-hash"}
    assigned = [str(bundle_a)] * 6 + [str(bundle_b)] * 5
    plan = plan_batches(listed, assigned, infos, done, 4)
    decoded = read_batches(plan)
    assert decoded.num_rows == 4
    predictor = BatchPredictor(infos, "cpu", None, 4, True, 1024, None, str(tmp_path / "cache"))
    loads = []
    original = predictor._use

    def counting(bundle: str) -> None:
        if bundle != predictor.bundle:
            loads.append(Path(bundle).name)
        original(bundle)

    predictor._use = counting  # type: ignore[method-assign]
    table = predictor(decoded)
    assert loads == ["a.anomalign", "b.anomalign"]  # one detector held at a time
    assert table.schema.equals(SCHEMA) and table.num_rows == 11
    rows = {Path(r["input"]).relative_to(folder.resolve()).as_posix(): r for r in table.to_pylist()}
    for name in ("broken/garbage.png", "broken/truncated.png"):
        assert rows[name]["status"] == "error" and name in rows[name]["error"]
        assert rows[name]["score"] is None and rows[name]["map_png"] is None
        assert len(rows[name]["content_hash"]) == 64
    ok = [r for r in rows.values() if r["status"] == "ok"]
    assert len(ok) == 9
    calibrations = {str(b): load_detector(b).calibration for b in (bundle_a, bundle_b)}
    for row in ok:
        assert row["decision"] in ("anomalous", "normal") and row["untrained_backbone"]
        assert (row["decision"] == "anomalous") == (row["score"] >= row["threshold"])
        # the service's confidence in the decision, from the detector's own calibration
        expected = calibrations[row["detector"]].confidence(row["score"], row["threshold"])
        assert expected is not None and 0.5 <= expected <= 1.0
        assert row["confidence"] == pytest.approx(expected)
        assert decode_map(row).shape == (64, 64)

    def nan_predict(images, **kwargs):  # a detector whose score is not finite
        prediction = predictor.detector.__class__.predict(predictor.detector, images, **kwargs)
        prediction.scores[:] = np.nan
        return prediction

    predictor.detector.predict = nan_predict
    table = predictor(decoded.slice(3, 1))
    assert set(table["status"].to_pylist()) == {"error"}
    assert all("non-finite score" in e for e in table["error"].to_pylist())


def test_schema_is_documented_in_the_readme() -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Many machines", 1)[1].split("\n## ", 1)[0]
    for name in COLUMNS:
        assert f"`{name}`" in section, f"README 'Many machines' lacks column {name}"
    assert rows_to_table([]).schema.equals(SCHEMA)
    assert SCHEMA.field("map_png").type == pa.large_binary()


def test_resume_refuses_other_settings_before_starting_ray(
    ray_synth: Path, bundle_a: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    settings = {"maps": True, "max_side": 512}
    manifest = {"schema_version": SCHEMA_VERSION, "settings": settings, "runs": []}
    (out / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="max_side differs"):
        predict_dataset(bundle_a, [ray_synth], out, max_side=1024)
    with pytest.raises(ConfigError, match="at least 1"):
        predict_dataset(bundle_a, [ray_synth], out, workers=0)


def test_cli_engine_options_are_checked(bundle_a: Path, ray_synth: Path, tmp_path: Path) -> None:
    args = ["predict", str(bundle_a), str(ray_synth), "--out", str(tmp_path / "o")]
    assert main([*args, "--engine", "ray", "--masks", str(tmp_path)]) == 2
    assert main([*args, "--workers", "2"]) == 2
    assert main([*args, "--no-maps"]) == 2
    assert main(["predict", "-", str(ray_synth), "--out", str(tmp_path / "o")]) == 2
