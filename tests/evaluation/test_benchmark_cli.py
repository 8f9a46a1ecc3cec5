"""``anomalign benchmark`` through ``anomalign.cli.main``: runs, resumes, rejects bad options."""

from __future__ import annotations

from pathlib import Path

import pytest

from anomalign.cli import main
from anomalign.io import read_json

pytestmark = pytest.mark.filterwarnings("ignore::anomalign.backbones.UntrainedBackboneWarning")

SYNTH = [
    "benchmark",
    "--dataset",
    "synthetic",
    "--backbone",
    "anomalign-tiny:random",
    "--synth-image-size",
    "64",
    "--synth-counts",
    "3,2,2",
    "--eval-size",
    "32",
    "--option",
    "image_score=single",
    "--quiet",
]


def test_cli_runs_resumes_and_rebuilds_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = [*SYNTH, "--method", "anoclip", "--categories", "synth_object", "--out", str(out)]
    assert main(argv) == 0
    first = capsys.readouterr()
    assert "1 units computed, 0 reused" in first.out and first.err.count("\n") <= 1
    run = read_json(out / "config.json")
    assert run["command"][:4] == ["anomalign", "benchmark", "--dataset", "synthetic"]
    assert run["config"]["method_options"] == {"*": {"image_score": "single"}}
    assert main(argv) == 0
    assert "0 units computed, 1 reused" in capsys.readouterr().out
    (out / "report.md").unlink()
    assert main([*argv, "--report-only"]) == 0
    assert (out / "report.md").is_file()


def test_cli_visa_layout_keeps_the_aspect_with_tiles(tmp_path: Path) -> None:
    out = tmp_path / "visa"
    argv = [*SYNTH, "--method", "anoclip", "--synth-layout", "visa", "--out", str(out)]
    assert main([*argv, "--categories", "synth_texture", "--overlays", "0"]) == 0
    unit = read_json(next(out.glob("units/**/*.json")))
    # The official VisA handling: tiles along the long side, metrics at short side x W.
    assert unit["options"]["tiling"] == "tiles" and unit["eval"]["aspect"] == "keep"
    assert unit["eval"]["map_sizes"] == [[32, 48]]
    assert unit["files"]["overlay"] is None


@pytest.mark.parametrize(
    ("extra", "option"),
    [
        (["--shots", "0,a"], "--shots"),
        (["--seeds", "-1"], "--seeds"),
        (["--shots", "1,1"], "--shots"),
        (["--method", "anoclip,nosuch"], "--method"),
        (["--eval-size", "big"], "--eval-size"),
        (["--eval-aspect", "stretch"], "--eval-aspect"),
        (["--aupro", "fast"], "--aupro"),
        (["--precision", "fp8"], "--precision"),
        (["--option", "nodelimiter"], "--option"),
        (["--option", "other.smoothing=none"], "--option"),
        (["--batch-size", "0"], "--batch-size"),
        (["--synth-counts", "1,2"], "--synth-counts"),
        (["--device", "tpu9"], "--device"),
    ],
)
def test_bad_options_name_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], option: str
) -> None:
    argv = [*SYNTH, "--method", "anoclip", "--out", str(tmp_path / "x"), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("anomalign benchmark: error:") and option in err
    assert not (tmp_path / "x").exists(), "options are checked before any work"


def test_root_is_required_for_real_datasets(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["benchmark", "--dataset", "mvtec"]) == 2
    assert "--root is required" in capsys.readouterr().err
    assert main(["benchmark", "--dataset", "imagenet", "--root", "."]) == 2
    assert "--dataset 'imagenet'" in capsys.readouterr().err


def test_report_only_needs_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["benchmark", "--dataset", "synthetic", "--out", str(tmp_path), "--report-only"]
    assert main(argv) == 2
    assert "--report-only" in capsys.readouterr().err
