"""Spec parsing, checkpoint files, the untrained flag and fast offline failures."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from anomalign.backbones import (
    Backbone,
    UntrainedBackboneWarning,
    WeightSource,
    load_backbone,
    parse_backbone_spec,
)
from anomalign.errors import ConfigError, DataError, WeightsUnavailableError


@pytest.mark.parametrize(
    ("text", "source", "arch"),
    [
        ("ViT-B-16-plus-240:laion400m_e32", WeightSource.TAG, "ViT-B-16-plus-240"),
        ("ViT-L-14-336:openai", WeightSource.TAG, "ViT-L-14-336"),
        ("ViT-B-16:/models/clip.safetensors", WeightSource.FILE, "ViT-B-16"),
        ("ViT-B-16:weights.bin", WeightSource.FILE, "ViT-B-16"),
        ("anomalign-tiny:random", WeightSource.RANDOM, "anomalign-tiny"),
        ("hf-hub:org/repo", WeightSource.HF_HUB, "hf-hub:org/repo"),
        ("local-dir:/some/folder", WeightSource.LOCAL_DIR, "local-dir:/some/folder"),
    ],
)
def test_parse_spec(text: str, source: WeightSource, arch: str) -> None:
    spec = parse_backbone_spec(text)
    assert spec.source is source
    assert spec.arch == arch
    assert spec.untrained == (source is WeightSource.RANDOM)


@pytest.mark.parametrize("text", ["", "ViT-B-16", ":tag", "ViT-B-16:", "hf-hub:"])
def test_parse_spec_rejects_malformed(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_backbone_spec(text)


def test_random_backbone_warns_and_is_flagged_and_seeded() -> None:
    with pytest.warns(UntrainedBackboneWarning, match="random weights"):
        first = load_backbone("anomalign-tiny:random")
    assert first.untrained and first.describe()["untrained_backbone"] is True
    with pytest.warns(UntrainedBackboneWarning):
        second = load_backbone("anomalign-tiny:random")
    for (name, a), (_, b) in zip(
        first.model.state_dict().items(), second.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


def test_checkpoint_file_round_trip(tiny_backbone: Backbone, tmp_path: Path) -> None:
    state = {k: v.contiguous() for k, v in tiny_backbone.model.state_dict().items()}
    path = tmp_path / "tiny.safetensors"
    save_file(state, str(path))
    loaded = load_backbone(f"anomalign-tiny:{path}")
    assert not loaded.untrained
    assert loaded.describe()["weights_path"] == str(path)
    images = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(
        loaded.encoder()(images).local_tokens, tiny_backbone.encoder()(images).local_tokens
    )
    torch_path = tmp_path / "tiny.pt"
    torch.save(state, torch_path)
    assert torch.equal(
        load_backbone(f"anomalign-tiny:{torch_path}").model.visual.proj,
        tiny_backbone.model.visual.proj,
    )


class _Payload:
    """Stands in for a pickled object a hostile checkpoint could carry."""

    def __reduce__(self):
        return (print, ("this must never run",))


def _refusal(path: Path) -> str:
    with pytest.raises(DataError) as caught:
        load_backbone(f"anomalign-tiny:{path}")
    message = str(caught.value)
    assert str(path) in message, message
    assert "weights_only" not in message and "\n" not in message, message
    assert "Expected a .safetensors file" in message, message
    return message


def test_pickled_checkpoint_is_refused_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    evil = tmp_path / "evil.bin"
    torch.save({"visual.proj": torch.zeros(2), "payload": _Payload()}, evil)
    assert "pickled Python objects" in _refusal(evil)
    assert "must never run" not in capsys.readouterr().out


def test_state_dict_with_wrong_keys_is_refused(tiny_backbone: Backbone, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.safetensors"
    save_file({"not.a.parameter": torch.zeros(3)}, str(wrong))
    assert "do not match the architecture" in _refusal(wrong)
    state = {k: v.contiguous() for k, v in tiny_backbone.model.state_dict().items()}
    state["visual.proj"] = torch.zeros(3, 3)
    resized = tmp_path / "resized.safetensors"
    save_file(state, str(resized))
    assert "wrong size" in _refusal(resized)


def test_corrupt_safetensors_is_refused(tiny_backbone: Backbone, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}" + bytes(64))
    assert "not a valid safetensors file" in _refusal(corrupt)
    truncated = tmp_path / "truncated.safetensors"
    state = {k: v.contiguous() for k, v in tiny_backbone.model.state_dict().items()}
    save_file(state, str(truncated))
    truncated.write_bytes(truncated.read_bytes()[:-1000])
    _refusal(truncated)


def test_missing_checkpoint_file_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(WeightsUnavailableError, match="nope.safetensors"):
        load_backbone(f"anomalign-tiny:{missing}")


def test_unknown_architecture_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="No-Such-Arch"):
        load_backbone("No-Such-Arch:random")


def test_missing_local_dir_is_reported(tmp_path: Path) -> None:
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        load_backbone(f"local-dir:{tmp_path / 'absent'}")
    with pytest.raises(WeightsUnavailableError, match="open_clip_config.json"):
        load_backbone(f"local-dir:{tmp_path}")


def test_unknown_tag_lists_known_tags(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ANOMALIGN_OFFLINE", "1")
    with pytest.raises(WeightsUnavailableError, match="laion400m_e32"):
        load_backbone("ViT-B-16-plus-240:no_such_tag", cache_dir=str(tmp_path))


def test_offline_missing_weights_fail_fast_with_instructions(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    with pytest.raises(WeightsUnavailableError) as caught:
        load_backbone("ViT-B-16-plus-240:laion400m_e32", cache_dir=str(tmp_path))
    assert time.perf_counter() - started < 5.0
    message = str(caught.value)
    assert "ViT-B-16-plus-240:laion400m_e32" in message
    assert "ViT-B-16-plus-240:/path/to/weights.safetensors" in message
    assert "offline" in message


def test_cli_reports_offline_failure_without_traceback(tmp_path: Path) -> None:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    code = (
        "import sys; from anomalign.backbones import load_backbone; "
        "from anomalign.errors import AnomalignError\n"
        "try:\n    load_backbone('ViT-L-14-336:openai', cache_dir=sys.argv[1])\n"
        "except AnomalignError as e:\n    print(type(e).__name__); sys.exit(3)\n"
    )
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True, text=True
    )
    assert result.returncode == 3, result.stderr
    assert "WeightsUnavailableError" in result.stdout
    assert time.perf_counter() - started < 30.0


def test_timm_checkpoint_refusals_name_the_file(tmp_path: Path) -> None:
    evil = tmp_path / "evil.pth"
    torch.save({"payload": _Payload()}, evil)
    wrong = tmp_path / "wrong.safetensors"
    save_file({"not.a.parameter": torch.zeros(3)}, str(wrong))
    for path, needle in ((evil, "pickled Python objects"), (wrong, "do not match")):
        with pytest.raises(DataError) as caught:
            load_backbone(f"timm:resnet18:{path}")
        message = str(caught.value)
        assert str(path) in message and needle in message and "weights_only" not in message
