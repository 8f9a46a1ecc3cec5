"""Detector bundles round-trip and reject foreign files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from anomalign.bundles import DetectorBundle, load_bundle, save_bundle
from anomalign.errors import DataError


def test_round_trip_is_exact(tmp_path: Path) -> None:
    bundle = DetectorBundle(
        method="anoclip",
        backbone="anomalign-tiny:random",
        config={"preset": "default", "smoothing": "mean3"},
        tensors={"text_pair": torch.randn(32, 2), "memory.3": torch.randn(10, 64)},
        extra={"category": "bottle", "threshold": {"value": 0.42, "mode": "manual"}},
    )
    path = save_bundle(bundle, tmp_path / "sub" / "det.anomalign")
    loaded = load_bundle(path)
    assert (loaded.method, loaded.backbone, loaded.config, loaded.extra) == (
        bundle.method,
        bundle.backbone,
        bundle.config,
        bundle.extra,
    )
    for key, value in bundle.tensors.items():
        assert torch.equal(loaded.tensors[key], value)
    assert sorted(p.name for p in path.parent.iterdir()) == ["det.anomalign"]
    empty = save_bundle(DetectorBundle("anoclip", "x:random", {}), tmp_path / "empty.anomalign")
    assert load_bundle(empty).tensors == {}


def test_foreign_and_missing_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_bundle(tmp_path / "missing.anomalign")
    junk = tmp_path / "junk.anomalign"
    junk.write_bytes(b"not safetensors")
    with pytest.raises(DataError, match="junk.anomalign"):
        load_bundle(junk)
    other = tmp_path / "weights.safetensors"
    save_file({"w": torch.zeros(2)}, str(other))
    with pytest.raises(DataError, match="not an anomalign detector bundle"):
        load_bundle(other)
