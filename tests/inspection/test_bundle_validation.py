"""Tampered, truncated and malformed bundles are refused with one line naming the file."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from inspect_helpers import fit_detector
from safetensors import safe_open
from safetensors.torch import save_file

from anomalign.backbones import Backbone
from anomalign.bundles import tensor_digest
from anomalign.cli import main
from anomalign.errors import AnomalignError
from anomalign.methods import Detector, load_detector

pytestmark = pytest.mark.filterwarnings("ignore::anomalign.backbones.UntrainedBackboneWarning")

Edit = Callable[[dict[str, Any], dict[str, torch.Tensor]], None]


def _read(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    with safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata()), {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118


def _tamper(source: Path, target: Path, edit: Edit, rehash: bool = True) -> Path:
    """Copy bundle ``source`` to ``target`` after ``edit(manifest, tensors)``; ``rehash``
    recomputes the checksum, so only the schema or tensor checks can catch the edit."""
    metadata, tensors = _read(source)
    manifest = json.loads(metadata["manifest"])
    edit(manifest, tensors)
    metadata["manifest"] = json.dumps(manifest)
    if rehash:
        metadata["sha256"] = tensor_digest(metadata["manifest"], tensors)
    save_file(tensors, str(target), metadata=metadata)
    return target


@pytest.fixture(scope="module")
def anoclip_bundle(inspector: Detector, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return inspector.save(tmp_path_factory.mktemp("bundles") / "anoclip.anomalign")


@pytest.fixture(scope="module")
def fgad_bundle(
    tiny_backbone: Backbone, train_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    fitted = fit_detector(
        "finegrainedad",
        sorted(train_dir.iterdir())[:2],
        category="bottle",
        backbone=tiny_backbone,
        method_options={"memory_blocks": [1, 2], "seg_epochs": 1, "cls_epochs": 1},
    )
    return fitted.save(tmp_path_factory.mktemp("bundles") / "fgad.anomalign")


def _load_error(path: Path, backbone: Backbone) -> str:
    with pytest.raises(AnomalignError) as caught:
        load_detector(path, backbone=backbone)
    message = str(caught.value)
    assert str(path) in message and "\n" not in message, message
    return message


def _drop(key: str) -> Edit:
    return lambda manifest, tensors: manifest.pop(key)


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (_drop("method"), "method: required field is missing"),
        (_drop("config"), "config: required field is missing"),
        (_drop("backbone"), "backbone: required field is missing"),
        (lambda m, t: m.update(method=""), "method: String should have at least 1 character"),
        (lambda m, t: m.update(config=[1, 2]), "config: Input should be a valid dictionary"),
        (
            lambda m, t: m["extra"].update(threshold={}),
            "extra.threshold.value: required field is missing",
        ),
        (
            lambda m, t: m["extra"].update(threshold={"value": "x"}),
            "extra.threshold.value: Input should be a valid number",
        ),
        (lambda m, t: m["extra"]["calibration"].update(map_high=-5.0), "map_high"),
        (
            lambda m, t: m["extra"].update(object_name=None),
            "invalid 'extra' in the manifest: object_name",
        ),
        (lambda m, t: m["config"].update(tta_steps=-3), "tta_steps must be >= 0"),
    ],
)
def test_manifest_is_checked_against_the_schema(
    anoclip_bundle: Path, tiny_backbone: Backbone, tmp_path: Path, edit: Edit, needle: str
) -> None:
    path = _tamper(anoclip_bundle, tmp_path / "bad.anomalign", edit)
    assert needle in _load_error(path, tiny_backbone)


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("manifest", "{not json", "manifest is not valid JSON"),
        ("manifest", "[1, 2]", "not a JSON object"),
        ("manifest", '{"method": NaN}', "not valid JSON"),
        ("version", "two", "format version 'two' is not a whole number"),
        ("version", "1", "format version 1"),
        ("version", "99", "Upgrade anomalign"),
    ],
)
def test_bad_metadata_is_refused(
    anoclip_bundle: Path, tiny_backbone: Backbone, tmp_path: Path, key: str, value: str, needle: str
) -> None:
    metadata, tensors = _read(anoclip_bundle)
    metadata[key] = value
    path = tmp_path / "bad.anomalign"
    save_file(tensors, str(path), metadata=metadata)
    assert needle in _load_error(path, tiny_backbone)


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda m, t: t.update(text_pair=torch.zeros(t["text_pair"].shape[0], 3)), "(D, 2)"),
        (lambda m, t: t.update(text_pair=torch.zeros(5, 2)), "D = "),
        (lambda m, t: t.update(prompt_basis=t["prompt_basis"][:0]), "'prompt_basis'"),
        (lambda m, t: t.update(text_pair=t["text_pair"].double()), "dtype torch.float64"),
        (lambda m, t: t.pop("prompt_basis"), "['prompt_basis'] are missing"),
        (lambda m, t: t.update(stowaway=torch.zeros(1)), "unexpected tensor(s) ['stowaway']"),
    ],
)
def test_anoclip_tensors_are_checked(
    anoclip_bundle: Path, tiny_backbone: Backbone, tmp_path: Path, edit: Edit, needle: str
) -> None:
    path = _tamper(anoclip_bundle, tmp_path / "bad.anomalign", edit)
    assert needle in _load_error(path, tiny_backbone)


def _empty_memory(manifest: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    tensors["memory.2"] = tensors["memory.2"][:0]


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (_empty_memory, "tensor 'memory.2' has shape (0,"),
        (lambda m, t: t.pop("memory.1"), "['memory.1'] are missing"),
        (lambda m, t: t.update({"memory.1": t["memory.1"][:, :3].contiguous()}), "W1 = "),
        (lambda m, t: t.update(seg_keys=t["seg_keys"][:1]), "Ls = "),
        (lambda m, t: m["extra"].update(caption_hash="0" * 64), "does not match its hash"),
        (
            lambda m, t: m["extra"].pop("logit_scale"),
            "invalid 'extra' in the manifest: logit_scale: required field is missing",
        ),
        (lambda m, t: m["extra"].update(caption={"Level_1": 3}), "stored caption is invalid"),
    ],
)
def test_finegrainedad_tensors_and_extra_are_checked(
    fgad_bundle: Path, tiny_backbone: Backbone, tmp_path: Path, edit: Edit, needle: str
) -> None:
    path = _tamper(fgad_bundle, tmp_path / "bad.anomalign", edit)
    assert needle in _load_error(path, tiny_backbone)


def test_a_flipped_bit_is_caught_by_the_checksum(
    anoclip_bundle: Path, tiny_backbone: Backbone, tmp_path: Path
) -> None:
    data = bytearray(anoclip_bundle.read_bytes())
    data[-5] ^= 0x10  # inside the last tensor's bytes
    path = tmp_path / "flipped.anomalign"
    path.write_bytes(bytes(data))
    assert "checksum does not match" in _load_error(path, tiny_backbone)
    same = _tamper(anoclip_bundle, tmp_path / "edited.anomalign", _scale, rehash=False)
    assert "checksum does not match" in _load_error(same, tiny_backbone)


def _scale(manifest: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    tensors["text_pair"] = tensors["text_pair"] * 1.01


def test_valid_bundle_still_loads_and_predicts_alike(
    inspector: Detector, anoclip_bundle: Path, tiny_backbone: Backbone, test_dir: Path
) -> None:
    images = sorted((test_dir / "good").iterdir())[:2]
    loaded = load_detector(anoclip_bundle, backbone=tiny_backbone)
    np.testing.assert_array_equal(loaded.predict(images).scores, inspector.predict(images).scores)


def test_cli_predict_with_a_bad_bundle_exits_2_with_one_line(
    anoclip_bundle: Path, tmp_path: Path, test_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _tamper(anoclip_bundle, tmp_path / "bad.anomalign", _drop("backbone"))
    assert main(["predict", str(path), str(test_dir), "--out", str(tmp_path / "o")]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and str(path) in error and "backbone" in error
