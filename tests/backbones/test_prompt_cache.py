"""The on-disk prompt-embedding cache: identity keys, atomic writes, LRU bound, switches."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import open_clip
import pytest
import torch

from anomalign.backbones import Backbone, TextEncoder, register_model_configs
from anomalign.backbones.prompt_cache import (
    ENV_DIR,
    ENV_SWITCH,
    PromptCache,
    cache_root,
    open_prompt_cache,
)
from anomalign.io import TMP_SUFFIX

PROMPTS = ["a photo of a flawless bottle", "a photo of a broken bottle", "a bent metal nut"]


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty cache root for one test."""
    monkeypatch.setenv(ENV_DIR, str(tmp_path / "cache"))
    monkeypatch.delenv(ENV_SWITCH, raising=False)
    return tmp_path / "cache" / "prompts"


def _tiny_model(seed: int) -> torch.nn.Module:
    register_model_configs()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.create_model("anomalign-tiny", pretrained=None)
    return model.eval().requires_grad_(False)


def _encoder(backbone: Backbone, model: torch.nn.Module | None = None) -> TextEncoder:
    """A fresh encoder (empty in-memory cache) named like the backbone's."""
    return TextEncoder(model or backbone.model, backbone.tokenizer, name=backbone.spec.arch)


def _forbid_encoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(self, token_ids):
        raise AssertionError("the text tower ran although the prompts are cached")

    monkeypatch.setattr(TextEncoder, "_encode_uncached", fail)


def test_tests_never_use_the_real_user_cache() -> None:
    import platformdirs

    assert Path(os.environ[ENV_DIR]) != Path(platformdirs.user_cache_dir("anomalign"))


def test_default_location_is_the_user_cache_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    import platformdirs

    monkeypatch.delenv(ENV_DIR)
    assert PromptCache().directory == Path(platformdirs.user_cache_dir("anomalign")) / "prompts"
    monkeypatch.setenv(ENV_DIR, "/somewhere/else")
    assert cache_root() == Path("/somewhere/else")


def test_cache_returns_identical_tensors_without_encoding(
    tiny_backbone: Backbone, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _encoder(tiny_backbone).encode(PROMPTS, normalize=False)
    files = list(cache_dir.glob("*.safetensors"))
    assert len(files) == 1
    _forbid_encoding(monkeypatch)
    again = _encoder(tiny_backbone).encode(PROMPTS, normalize=False)
    assert torch.equal(first, again)
    with pytest.raises(AssertionError, match="text tower ran"):
        _encoder(tiny_backbone).encode([*PROMPTS, "one more"])


def test_key_follows_the_weights_not_the_spec(
    tiny_backbone: Backbone, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    same = _encoder(tiny_backbone, _tiny_model(seed=0))  # the spec's seed, built by hand
    other = _encoder(tiny_backbone, _tiny_model(seed=1))
    reference = _encoder(tiny_backbone)
    assert same.identity == reference.identity
    assert other.identity != reference.identity
    cached = reference.encode(PROMPTS, normalize=False)
    assert torch.equal(same.encode(PROMPTS, normalize=False), cached)
    fresh = other.encode(PROMPTS, normalize=False)  # a miss: encodes with its own weights
    assert not torch.allclose(fresh, cached)
    with torch.no_grad():
        expected = other.model.encode_text(other.tokenize(PROMPTS))
    assert torch.equal(fresh, expected)
    assert len(list(cache_dir.glob("*.safetensors"))) == 2


def test_key_changes_with_texts_order_tokenizer_and_structure(tiny_backbone: Backbone) -> None:
    text = _encoder(tiny_backbone)
    key = PromptCache.key(text.identity, PROMPTS)
    assert key == PromptCache.key(_encoder(tiny_backbone).identity, tuple(PROMPTS))
    assert key != PromptCache.key(text.identity, PROMPTS[::-1])
    assert key != PromptCache.key(text.identity, [p + " " for p in PROMPTS])
    short_context = copy.copy(tiny_backbone.tokenizer)
    short_context.context_length = 20
    assert (
        TextEncoder(tiny_backbone.model, short_context, name="x").identity
        != TextEncoder(tiny_backbone.model, tiny_backbone.tokenizer, name="x").identity
    )
    renamed = TextEncoder(tiny_backbone.model, tiny_backbone.tokenizer, name="other-arch")
    assert renamed.identity != text.identity
    model = _tiny_model(seed=0)
    model.transformer.resblocks[0].mlp.gelu = open_clip.transformer.QuickGELU()
    assert _encoder(tiny_backbone, model).identity != text.identity  # same weights, other net


def test_switches_disable_the_disk_cache(
    tiny_backbone: Backbone, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _encoder(tiny_backbone).encode(PROMPTS, disk_cache=False)
    TextEncoder(tiny_backbone.model, tiny_backbone.tokenizer, prompt_cache=False).encode(PROMPTS)
    monkeypatch.setenv(ENV_SWITCH, "0")
    assert open_prompt_cache() is None
    _encoder(tiny_backbone).encode(PROMPTS)
    assert not cache_dir.exists() or not list(cache_dir.iterdir())
    _encoder(tiny_backbone).encode(PROMPTS, disk_cache=True)  # explicit argument wins
    assert len(list(cache_dir.glob("*.safetensors"))) == 1


def test_damaged_entries_are_recomputed(tiny_backbone: Backbone, cache_dir: Path) -> None:
    first = _encoder(tiny_backbone).encode(PROMPTS, normalize=False)
    (path,) = cache_dir.glob("*.safetensors")
    path.write_bytes(path.read_bytes()[:50])
    again = _encoder(tiny_backbone).encode(PROMPTS, normalize=False)
    assert torch.equal(first, again)
    assert PromptCache(cache_dir).get(path.stem) is not None  # rewritten whole


def test_size_bound_evicts_least_recently_used(tmp_path: Path) -> None:
    cache = PromptCache(tmp_path, max_bytes=10**9)
    tensors = {f"{i:064x}": torch.full((64, 16), float(i)) for i in range(4)}
    for age, (key, tensor) in enumerate(tensors.items()):
        path = cache.put(key, tensor)
        os.utime(path, (1000 + age, 1000 + age))  # key 0 oldest
    entry = cache.path("0" * 64).stat().st_size
    assert cache.get("0" * 64) is not None  # used now: the most recent
    cache.evict(max_bytes=2 * entry)
    left = {path.stem for path, _ in cache.entries()}
    assert left == {"0" * 64, f"{3:064x}"}
    assert torch.equal(cache.get(f"{3:064x}"), tensors[f"{3:064x}"])
    bounded = PromptCache(tmp_path, max_bytes=entry)
    bounded.put("f" * 64, torch.zeros(64, 16))
    assert [path.stem for path, _ in bounded.entries()] == ["f" * 64]
    assert bounded.size() <= entry


_WRITER = textwrap.dedent(
    """
    import sys, time, torch
    from anomalign.backbones.prompt_cache import PromptCache
    cache = PromptCache(sys.argv[1])
    value = float(sys.argv[2])
    tensor = torch.full((2048, 256), value)  # 2 MiB: writes take a while
    while time.time() < float(sys.argv[3]):
        time.sleep(0.005)
    seen = set()
    for _ in range(int(sys.argv[4])):
        cache.put("shared", tensor)
        got = cache.get("shared")
        assert got is not None and got.shape == (2048, 256), "partial read"
        values = got.unique()
        assert len(values) == 1, "a file mixing two writers"
        seen.add(float(values[0]))
    print(sorted(seen))
    """
)


def test_two_processes_writing_the_same_entry(tmp_path: Path) -> None:
    import time

    start = time.time() + 4.0  # both processes start writing at the same moment
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(tmp_path), str(value), str(start), "25"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for value in (1.0, 2.0)
    ]
    outputs = [proc.communicate(timeout=240) for proc in procs]
    for proc, (_out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    final = PromptCache(tmp_path).get("shared")
    assert final is not None and len(final.unique()) == 1
    assert float(final.unique()[0]) in (1.0, 2.0)
    assert not list(tmp_path.glob(f".*{TMP_SUFFIX}"))  # no temporary file left behind


_ENCODER = textwrap.dedent(
    """
    import sys, time, warnings, torch
    from anomalign.backbones import load_backbone
    warnings.simplefilter("ignore")
    backbone = load_backbone("anomalign-tiny:random")
    prompts = [f"a photo of object number {i}" for i in range(300)]
    while time.time() < float(sys.argv[1]):
        time.sleep(0.005)
    features = backbone.text.encode(prompts, normalize=False)
    torch.save(features, sys.argv[2])
    """
)


def test_two_processes_encoding_at_once_agree(
    tiny_backbone: Backbone, cache_dir: Path, tmp_path: Path
) -> None:
    import time

    start = time.time() + 8.0
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    outs = [tmp_path / f"features{i}.pt" for i in range(2)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _ENCODER, str(start), str(out)],
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for out in outs
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
    prompts = [f"a photo of object number {i}" for i in range(300)]
    expected = _encoder(tiny_backbone).encode(prompts, normalize=False, disk_cache=False)
    for out in outs:
        assert torch.equal(torch.load(out), expected)
    assert len(list(cache_dir.glob("*.safetensors"))) == 1
    assert torch.equal(_encoder(tiny_backbone).encode(prompts, normalize=False), expected)
