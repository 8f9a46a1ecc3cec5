"""Property tests: hostile input to the loaders gives our own error type, never a crash."""

from __future__ import annotations

import contextlib
import json
import tempfile
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from anomalign.backbones import Backbone
from anomalign.bundles import BUNDLE_FORMAT, BUNDLE_VERSION, load_bundle, tensor_digest
from anomalign.errors import AnomalignError
from anomalign.prompts.captions import load_caption_file, parse_caption

SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)

MANIFEST_KEYS = ["method", "backbone", "config", "extra", "anomalign_version", "other"]
EXTRA_KEYS = ["threshold", "calibration", "category", "object_name", "domain", "caption"]


@st.composite
def manifests(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly plausible manifests with random holes and wrong types."""
    manifest: dict[str, Any] = {}
    for key in draw(st.lists(st.sampled_from(MANIFEST_KEYS), unique=True)):
        manifest[key] = draw(json_values)
    if draw(st.booleans()):
        manifest["method"] = draw(st.sampled_from(["anoclip", "anoclip+", "finegrainedad", "x"]))
        manifest["backbone"] = draw(st.sampled_from(["anomalign-tiny:random", "nope", ""]))
        manifest["config"] = draw(
            st.dictionaries(
                st.sampled_from(["preset", "tta_steps", "smoothing", "memory_blocks", "lr"]),
                json_values | st.sampled_from(["default", "official", 3, -1, 1e15]),
                max_size=3,
            )
        )
        manifest["extra"] = draw(
            st.dictionaries(st.sampled_from(EXTRA_KEYS), json_values, max_size=4)
        )
    return manifest


tensor_sets = st.dictionaries(
    st.sampled_from(["text_pair", "prompt_basis", "memory.1", "seg_pairs", "junk"]),
    st.tuples(st.integers(0, 4), st.integers(0, 40), st.sampled_from(["f32", "f64", "i64"])),
    max_size=3,
)
DTYPES = {"f32": torch.float32, "f64": torch.float64, "i64": torch.int64}


def _write_bundle(folder: Path, manifest: Any, tensors: dict[str, Any], good_sum: bool) -> Path:
    built = {k: torch.ones((rows, cols), dtype=DTYPES[d]) for k, (rows, cols, d) in tensors.items()}
    text = json.dumps(manifest)
    metadata = {"format": BUNDLE_FORMAT, "version": str(BUNDLE_VERSION), "manifest": text}
    metadata["sha256"] = tensor_digest(text, built) if good_sum else "0" * 64
    path = folder / "random.anomalign"
    save_file(built, str(path), metadata=metadata)
    return path


@SETTINGS
@given(data=st.binary(max_size=2048))
def test_bundle_loader_on_random_bytes(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "random.anomalign"
        path.write_bytes(data)
        with pytest.raises(AnomalignError):
            load_bundle(path)


@SETTINGS
@given(manifest=manifests(), tensors=tensor_sets, good_sum=st.booleans())
def test_bundle_loader_on_random_manifests(
    tiny_backbone: Backbone, manifest: dict[str, Any], tensors: dict[str, Any], good_sum: bool
) -> None:
    from anomalign.methods import load_detector

    with tempfile.TemporaryDirectory() as folder:
        path = _write_bundle(Path(folder), manifest, tensors, good_sum)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                load_detector(path, backbone=tiny_backbone)
            except AnomalignError as error:
                assert str(path) in str(error) or "not an anomalign" in str(error)


@SETTINGS
@given(data=st.binary(max_size=4096) | st.text(max_size=400).map(lambda t: t.encode("utf-8")))
def test_caption_loader_on_random_bytes(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "caption.json"
        path.write_bytes(data)
        with pytest.raises(AnomalignError):
            load_caption_file(path)


@SETTINGS
@given(data=json_values | st.dictionaries(st.sampled_from(["Level_1", "Level_2"]), json_values))
def test_caption_parser_on_random_json(data: Any) -> None:
    with contextlib.suppress(AnomalignError):
        parse_caption(data)


option_names = st.sampled_from(
    ["tta_steps", "tta_lr", "smoothing", "vv_depth", "seed", "memory_blocks", "lr", "n_ctx"]
) | st.text(max_size=10)
option_values = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["1e15", "nan", "NaN", "Infinity", "-1", "[1, 2]", "[]", "{}", "null"]),
    st.integers(-(10**20), 10**20).map(str),
    st.floats().map(repr),
    json_values.map(json.dumps),
)


@SETTINGS
@given(
    strings=st.lists(
        st.tuples(option_names, st.sampled_from(["=", "", "=="]), option_values).map("".join),
        max_size=3,
    ),
    method=st.sampled_from(["anoclip", "anoclip+", "finegrainedad"]),
)
def test_option_strings_give_a_config_or_our_error(strings: list[str], method: str) -> None:
    from anomalign.methods import method_spec
    from anomalign.options import parse_key_value

    spec = method_spec(method)
    with contextlib.suppress(AnomalignError):
        texts = dict(parse_key_value(text, "--option") for text in strings)
        options = spec.coerce_options(texts)
        config = {k: v for k, v in options.items() if k not in ("shots", "precision", "device")}
        spec.config.from_preset("default", **{**spec.fixed, **config})
