"""`anomalign fit` and `anomalign predict` through the CLI entry point."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from anomalign.bundles import load_bundle
from anomalign.cli import main
from anomalign.methods import load_detector

pytestmark = pytest.mark.filterwarnings("ignore::anomalign.backbones.UntrainedBackboneWarning")
TINY = "anomalign-tiny:random"


def _fit(tmp_path: Path, *extra: str) -> list[str]:
    out = str(tmp_path / "det.anomalign")
    return ["fit", "--method", "anoclip", "--backbone", TINY, "--option", "image_score=single",
            "--category", "synth_texture", "--out", out, *extra]  # fmt: skip


def test_fit_then_predict(
    train_dir: Path, test_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_fit(tmp_path, "--normal", str(train_dir), "--fpr", "0.2")) == 0
    out = capsys.readouterr().out
    assert "Fitted anoclip on 6 normal image(s)" in out and "UNTRAINED BACKBONE" in out
    assert "threshold: " in out and "fpr" in out
    bundle = load_bundle(tmp_path / "det.anomalign")
    assert bundle.extra["threshold"]["mode"] == "fpr"
    assert bundle.config["image_score"] == "single"

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    args = ["predict", str(tmp_path / "det.anomalign"), str(test_dir), str(broken),
            "--out", str(tmp_path / "out"), "--batch-size", "4", "--map-format", "npy"]  # fmt: skip
    assert main(args) == 1  # finished, but one image was skipped
    out = capsys.readouterr().out
    assert "10 image(s): 9 predicted, 0 already done (resumed), 1 skipped" in out
    assert f"skipped {broken.resolve()}" in out
    with (tmp_path / "out" / "summary.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 10 and {r["decision"] for r in rows} <= {"anomalous", "normal", ""}
    detector = load_detector(tmp_path / "det.anomalign")
    for row in (r for r in rows if r["status"] == "ok"):  # one confidence rule everywhere
        expected = detector.calibration.confidence(float(row["score"]), detector.threshold.value)
        assert float(row["confidence"]) == pytest.approx(expected) and expected >= 0.5
    assert all((tmp_path / "out" / r["map"]).is_file() for r in rows if r["status"] == "ok")
    broken.unlink()
    assert main(args[:3] + args[4:]) == 0  # resume: nothing left to do
    assert "9 already done (resumed), 0 skipped" in capsys.readouterr().out


def test_manual_threshold_and_override(
    test_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_fit(tmp_path, "--threshold", "0.25")) == 0
    assert "No normal images" in capsys.readouterr().out
    out_dir = tmp_path / "out"
    args = ["predict", str(tmp_path / "det.anomalign"), str(test_dir / "good"), "--out",
            str(out_dir), "--cmap", "hot", "--no-colorbar", "--grid", "0"]  # fmt: skip
    assert main(args) == 0
    with (out_dir / "summary.csv").open() as stream:
        assert {r["decision"] for r in csv.DictReader(stream)} == {"anomalous"}
    assert main([*args, "--threshold", "2", "--no-resume"]) == 0
    with (out_dir / "summary.csv").open() as stream:
        assert {r["decision"] for r in csv.DictReader(stream)} == {"normal"}


def test_usage_errors_are_reported(
    train_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_fit(tmp_path, "--normal", str(train_dir), "--f1")) == 2
    assert "anomalous validation images" in capsys.readouterr().err
    assert main(_fit(tmp_path, "--option", "nonsense")) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    assert main(_fit(tmp_path, "--option", "no_such_option=1")) == 2
    assert "no_such_option" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "none.anomalign"), str(train_dir), "--out", "x"]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["fit", "--method", "anoclip", "--threshold", "1", "--fpr", "0.1", "--out", "x"])
