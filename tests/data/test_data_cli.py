"""``anomalign data inspect`` and ``anomalign data synth`` through the CLI entry point."""

from __future__ import annotations

from pathlib import Path

import pytest

import anomalign.cli as cli


@pytest.fixture(autouse=True)
def _only_data_command(monkeypatch: pytest.MonkeyPatch) -> None:
    # Other commands live on other branches; the data command is tested on its own.
    assert "data" in cli.COMMAND_MODULES
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("data",))


def test_synth_then_inspect(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    args = ["data", "synth", str(out), "--image-size", "32", "--n-train", "2"]
    assert cli.main([*args, "--seed", "1"]) == 0
    assert cli.main(["data", "inspect", str(out)]) == 0
    text = capsys.readouterr().out
    assert "mvtec (auto-detected)" in text and "synth_object" in text
    assert "scratch" in text and "6 of 6" not in text and "12 of 12" in text


def test_inspect_visa_with_category(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "visa"
    assert cli.main(["data", "synth", str(out), "--layout", "visa", "--image-size", "32"]) == 0
    code = cli.main(["data", "inspect", str(out), "--layout", "visa", "--category", "synth_object"])
    text = capsys.readouterr().out
    assert code == 0 and "visa (given)" in text and "synth_texture" not in text


def test_inspect_errors_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["data", "inspect", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "missing" in err and "does not exist" in err and "Traceback" not in err
    (tmp_path / "empty").mkdir()
    assert cli.main(["data", "inspect", str(tmp_path / "empty")]) == 2
    assert "Cannot recognise the dataset layout" in capsys.readouterr().err
