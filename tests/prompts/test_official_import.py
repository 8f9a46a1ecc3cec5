"""`anomalign captions import`: an official-format caption file read as data only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from anomalign.cli import main
from anomalign.prompts import load_caption_file
from anomalign.prompts.captions import CaptionError
from anomalign.prompts.captions.official_file import import_official, read_literals

FIXTURE = Path(__file__).parent / "fixtures" / "fine_grained_prompts.py"


def test_import_turns_the_official_shape_into_valid_captions() -> None:
    result = import_official(FIXTURE)
    assert sorted(result.captions) == ["gizmo", "widget"]
    widget = result.captions["widget"]
    assert widget.category == "widget" and widget.level2.entities == ("widget body", "knob")
    assert widget.defects == ("{} with a dent", "{} with a scuff")
    assert result.captions["gizmo"].defects[1] == "{} with a loose cap"  # whitespace cleaned
    assert len(result.problems) == 1 and "ghost" in result.problems[0]
    assert result.vocabulary["color"] == ["teal", "Amber", "violet", "crimson"]  # verbatim
    assert set(result.vocabulary) == {"color", "texture", "shape", "location", "number"}


def test_cli_import_writes_caption_files_and_the_vocabulary(tmp_path: Path, capsys) -> None:
    out = tmp_path / "captions"
    assert main(["captions", "import", str(FIXTURE), "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "wrote 2 caption(s) and vocabulary.json" in printed.out and "ghost" in printed.err
    assert load_caption_file(out / "widget.json").foreground == "widget"
    assert json.loads((out / "vocabulary.json").read_text())["shape"][-1] == "hexagonal"
    assert main(["captions", "import", str(FIXTURE), "--out", str(out)]) == 2  # no --force
    assert "--force" in capsys.readouterr().err
    assert main(["captions", "import", str(FIXTURE), "--out", str(out), "--force"]) == 0


@pytest.mark.parametrize(
    ("source", "line", "words"),
    [
        ("import os\nx = 1\n", 1, "only 'NAME = <literal>' assignments"),
        ("x = [1, 2]\ny = open('secret').read()\n", 2, "not a plain literal"),
        ("x = {'a': 1}\ndef f():\n    return 1\n", 2, "FunctionDef"),
        ("x = 1\nx.y = 2\n", 2, "only 'NAME = <literal>' assignments"),
        ("x = [1,\n", 1, "not valid Python"),
        ("x = __import__('os')\n", 1, "not a plain literal"),
    ],
)
def test_anything_but_literals_is_refused_naming_file_and_line(
    tmp_path: Path, source: str, line: int, words: str
) -> None:
    path = tmp_path / "fine_grained_prompts.py"
    path.write_text(source)
    with pytest.raises(CaptionError) as caught:
        read_literals(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:{line}:") and words in message
    assert "\n" not in message


def test_cli_refusal_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    path = tmp_path / "evil.py"
    path.write_text("captions = []\nprint('hello')\n")
    assert main(["captions", "import", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"{path}:2:" in err and err.count("\n") == 1 and "hello" not in err
    assert not (tmp_path / "o").exists()


def test_the_file_is_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "fine_grained_prompts.py"
    path.write_text(f"x = 1\nopen({str(marker)!r}, 'w').write('x')\n")
    with pytest.raises(CaptionError):
        read_literals(path)
    assert not marker.exists()
