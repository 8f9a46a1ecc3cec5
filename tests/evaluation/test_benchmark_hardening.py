"""A benchmark folder survives kills: no half dataset, no stale temporaries, one writer."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

import anomalign.data.synthetic as synthetic
from anomalign.backbones import Backbone
from anomalign.errors import DataError
from anomalign.evaluation import BenchmarkConfig, run_benchmark
from anomalign.outdir import OutputLock


def test_killed_dataset_generation_is_not_reused(
    small_config: BenchmarkConfig,
    tiny_backbone: Backbone,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = synthetic.generate_synthetic_dataset

    def killed_halfway(root: Path, **kwargs: Any) -> Path:
        original(root, **{**kwargs, "categories": kwargs["categories"][:1]})
        raise KeyboardInterrupt  # the process dies after the first category

    monkeypatch.setattr(synthetic, "generate_synthetic_dataset", killed_halfway)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(small_config, out, backbone=tiny_backbone, progress=False)
    monkeypatch.setattr(synthetic, "generate_synthetic_dataset", original)
    result = run_benchmark(small_config, out, backbone=tiny_backbone, progress=False)
    assert sorted({k.category for k in result.computed}) == ["synth_object", "synth_texture"]
    assert not list((out / "synthetic-data").glob("*.partial-*"))


def test_stale_temporaries_are_removed_and_outputs_follow_the_umask(
    small_config: BenchmarkConfig, tiny_backbone: Backbone, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    (out / "units").mkdir(parents=True)
    stale = out / "units" / ".synth_object.json.k2j3h4.tmp"
    stale.write_text("{half", encoding="utf-8")
    previous = os.umask(0o027)
    try:
        run_benchmark(small_config, out, backbone=tiny_backbone, progress=False)
    finally:
        os.umask(previous)
    assert not stale.exists()
    unit = next(out.glob("units/**/*.json"))
    assert stat.S_IMODE(unit.stat().st_mode) == 0o640
    assert stat.S_IMODE((out / "report.md").stat().st_mode) == 0o640


def test_second_run_into_a_locked_folder_is_refused(
    small_config: BenchmarkConfig, tiny_backbone: Backbone, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    with OutputLock(out, "anomalign benchmark"), pytest.raises(DataError, match="another run"):
        run_benchmark(small_config, out, backbone=tiny_backbone, progress=False)
    a_file = tmp_path / "file"
    a_file.write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="is a file, not a folder"):
        run_benchmark(small_config, a_file, backbone=tiny_backbone, progress=False)
