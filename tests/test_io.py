"""The shared writers: strict JSON, umask-respecting modes, temporaries cleaned."""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from anomalign.io import json_safe, write_json, write_text
from anomalign.outdir import check_output_dir, check_output_file, remove_stale_temporaries


def test_write_json_is_strict_and_json_safe_maps_undefined_to_null(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="JSON compliant"):
        write_json(tmp_path / "bad.json", {"score": math.nan})
    assert not list(tmp_path.iterdir())  # nothing half-written, no temporary left
    data = {"auroc": np.float32("nan"), "n": np.int64(3), "x": [np.float64(0.5), math.inf]}
    write_json(tmp_path / "ok.json", json_safe(data))
    assert json.loads((tmp_path / "ok.json").read_text()) == {
        "auroc": None,
        "n": 3,
        "x": [0.5, None],
    }


def test_written_files_follow_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o077)
    try:
        path = write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    previous = os.umask(0o002)
    try:
        path = write_text(tmp_path / "b.txt", "x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o664


def test_only_our_temporaries_are_removed(tmp_path: Path) -> None:
    ours = tmp_path / "maps" / ".a.png.k3j4l5.tmp"
    ours.parent.mkdir()
    ours.write_text("")
    kept = [tmp_path / "notes.tmp", tmp_path / ".hidden", tmp_path / "maps" / "a.png"]
    for path in kept:
        path.write_text("")
    assert remove_stale_temporaries(tmp_path) == [ours]
    assert all(p.exists() for p in kept)


def test_output_path_checks(tmp_path: Path) -> None:
    a_file = tmp_path / "f"
    a_file.write_text("")
    assert check_output_dir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    with pytest.raises(Exception, match="is a file, not a folder"):
        check_output_dir(a_file)
    with pytest.raises(Exception, match="is a folder; expected a file name"):
        check_output_file(tmp_path)
    assert check_output_file(tmp_path / "x" / "det.anomalign").name == "det.anomalign"
