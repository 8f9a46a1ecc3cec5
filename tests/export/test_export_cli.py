"""`anomalign export` through the CLI entry point: exports, refusals, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from anomalign.cli import main
from anomalign.export.metadata import ExportMetadata
from anomalign.export.runtime import OnnxSession

pytestmark = pytest.mark.filterwarnings("ignore::anomalign.backbones.UntrainedBackboneWarning")
TINY = "anomalign-tiny:random"
CATEGORY = "bottle"


def test_export_writes_a_model_and_says_how(
    anoclip_single, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "model.onnx"
    assert main(["export", str(anoclip_single.bundle), "--out", str(out), "--opset", "18"]) == 0
    printed = capsys.readouterr().out
    assert "Exported anoclip (single image score)" in printed
    assert "opset 18, batch 1, float32" in printed and "dynamo=True" in printed
    meta = ExportMetadata.from_props(OnnxSession(out).props)
    assert meta.batch == 1 and meta.provenance["opset"] == 18


def test_anoclip_plus_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "plus.anomalign"
    fit = ["fit", "--method", "anoclip+", "--backbone", TINY, "--category", CATEGORY,
           "--option", "image_score=single", "--out", str(bundle)]  # fmt: skip
    assert main(fit) == 0
    capsys.readouterr()
    assert main(["export", str(bundle), "--out", str(tmp_path / "plus.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "AnoCLIP+ cannot be exported" in err and "test-time adaptation" in err
    assert not (tmp_path / "plus.onnx").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--out", "x.onnx"], "does not exist"),
        (["--format", "openvino", "--out", "x.onnx"], "writes a '.xml' file"),
        (["--out", "x.onnx", "--opset", "7"], "--opset must be between"),
    ],
)
def test_bad_arguments_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    bundle = tmp_path / "missing.anomalign"
    if "--format" in args or "--opset" in args:
        bundle.write_bytes(b"")  # checked before the bundle is read
    assert main(["export", str(bundle), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
