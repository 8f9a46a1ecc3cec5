"""`anomalign fit --method finegrainedad` on a part with nothing but good images."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from anomalign.bundles import load_bundle
from anomalign.cli import main
from anomalign.methods.finegrainedad import detector as fgad_detector

pytestmark = pytest.mark.filterwarnings("ignore::anomalign.backbones.UntrainedBackboneWarning")


def test_fit_and_predict_a_part_without_a_caption(
    train_dir: Path,
    test_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the warning is given once per category and process: start from a fresh record
    monkeypatch.setattr(fgad_detector, "_WARNED_GENERIC", set())
    out = tmp_path / "x.anomalign"
    argv = ["fit", "--method", "finegrainedad", "--backbone", "anomalign-tiny:random",
            "--normal", str(train_dir), "--category", "my_part", "--out", str(out),
            "--option", "seg_epochs=1", "--option", "cls_epochs=1",
            "--option", "memory_blocks=1,2"]  # fmt: skip
    with pytest.warns(UserWarning, match="generic caption"):
        assert main(argv) == 0
    assert "Fitted finegrainedad" in capsys.readouterr().out
    bundle = load_bundle(out)
    assert bundle.extra["caption_kind"] == "generic" and bundle.extra["caption"]["generic"]
    assert bundle.extra["fit"]["caption"] == "generic"
    results = tmp_path / "results"
    predict = ["predict", str(out), str(test_dir / "good"), "--out", str(results)]
    assert main(predict) == 0
    with (results / "summary.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    assert rows and all(r["status"] == "ok" for r in rows)
    summary = (results / "summary.json").read_text()
    assert '"caption": "generic"' in json.dumps(json.loads(summary))  # the detector's record
