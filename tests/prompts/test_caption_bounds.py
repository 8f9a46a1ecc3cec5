"""Caption files are bounded (size, nesting) and may start with a UTF-8 byte order mark."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from anomalign.prompts.captions import CaptionError, load_caption_file
from anomalign.prompts.captions.store import MAX_CAPTION_BYTES, MAX_CAPTION_DEPTH


def test_caption_with_utf8_bom_is_accepted(tmp_path: Path, caption_data: dict[str, Any]) -> None:
    path = tmp_path / "widget.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(caption_data).encode("utf-8"))
    assert load_caption_file(path).category == "widget"


def test_oversized_caption_file_is_refused_quickly(tmp_path: Path) -> None:
    path = tmp_path / "huge.json"
    with path.open("wb") as stream:  # 50 MB, sparse: cheap to make, costly to parse
        stream.truncate(50 * 1024 * 1024)
    started = time.monotonic()
    with pytest.raises(CaptionError, match=rf"huge.json' is larger than {MAX_CAPTION_BYTES}"):
        load_caption_file(path)
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("depth", [MAX_CAPTION_DEPTH + 1, 100_000])
def test_deeply_nested_caption_is_a_caption_error(tmp_path: Path, depth: int) -> None:
    path = tmp_path / "deep.json"
    path.write_text('{"caption": ' + "[" * depth + "]" * depth + "}", encoding="utf-8")
    match = "larger than" if len(path.read_bytes()) > MAX_CAPTION_BYTES else "nested deeper"
    with pytest.raises(CaptionError, match=match):
        load_caption_file(path)
