"""The open_clip family: CLIP models from open_clip tags, local checkpoints, the Hugging
Face cache or folders, with the dual-path (V-V) image encoder and the text tower."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
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
from anomalign.backbones.dual_path import DualPathEncoder
from anomalign.backbones.preprocess import ImagePreprocessor
from anomalign.backbones.spec import (
    BackboneSpec,
    WeightSource,
)
from anomalign.backbones.text import TextEncoder
from anomalign.backbones.weights import (
    HF_CONFIG,
    how_to_provide,
    offline,
    pretrained_cfg,
    refused_checkpoint,
    resolve_tag_weights,
)
from anomalign.errors import ConfigError, WeightsUnavailableError

_CONFIGS_REGISTERED = False


def register_model_configs() -> None:
    """Add the package's own open_clip model configs (e.g. ``anomalign-tiny``) once."""
    global _CONFIGS_REGISTERED
    if _CONFIGS_REGISTERED:
        return
    import open_clip

    config_dir = resources.files("anomalign.backbones") / "model_configs"
    with resources.as_file(config_dir) as path:
        open_clip.add_model_config(Path(path))
    _CONFIGS_REGISTERED = True


def list_architectures() -> list[str]:
    """open_clip architecture names, including the package's own configs."""
    import open_clip

    register_model_configs()
    return list(open_clip.list_models())


@dataclass(eq=False)
class OpenCLIPBackbone(Backbone):
    """A frozen open_clip CLIP model with its preprocessing and provenance."""

    family: ClassVar[str] = "open_clip"
    spec: BackboneSpec
    model: nn.Module
    tokenizer: Any
    preprocessor: ImagePreprocessor
    precision: str = "fp32"
    weights_path: str | None = None
    load_seconds: float = 0.0
    _encoders: dict[int | None, DualPathEncoder] = field(default_factory=dict, repr=False)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def embed_dim(self) -> int:
        """Dimension of the joint image-text embedding space."""
        return int(self.model.visual.output_dim)

    @property
    def vision_width(self) -> int:
        """Width of the image transformer (dimension of intermediate tokens)."""
        return int(self.model.visual.conv1.out_channels)

    @property
    def num_blocks(self) -> int:
        return len(self.model.visual.transformer.resblocks)

    @property
    def grid_size(self) -> tuple[int, int]:
        return tuple(self.model.visual.grid_size)  # type: ignore[return-value]

    @property
    def logit_scale_param(self) -> float | None:
        scale = getattr(self.model, "logit_scale", None)
        return None if scale is None else float(scale.detach().float())

    def encoder(self, vv_depth: int | None = None) -> DualPathEncoder:
        """The dual-path image encoder (cached per V-V depth; ``None`` = all blocks)."""
        if vv_depth not in self._encoders:
            self._encoders[vv_depth] = DualPathEncoder(self.model.visual, vv_depth=vv_depth)
        return self._encoders[vv_depth]

    def encode(
        self,
        pixels: torch.Tensor,
        blocks: Iterable[int] = (),
        *,
        vv_depth: int | None = None,
        aliased: bool = False,
    ) -> ImageTokens:
        """One dual-path pass: global token, V-V local tokens and block tokens.

        ``aliased=True`` returns the block tokens with the official hooks' in-place
        aliasing (block b's output plus block b+1's attention residual; see
        :meth:`DualPathEncoder.forward`); the default returns the clean block outputs.
        """
        tokens = self.encoder(vv_depth)(pixels, intermediate_blocks=blocks, aliased=aliased)
        tokens.intermediate_grids = {b: tokens.grid_size for b in tokens.intermediates}
        return tokens

    @torch.no_grad()
    def encode_global(self, pixels: torch.Tensor) -> torch.Tensor:
        """``encode_image`` of normalised pixels ``(B, 3, H, W)`` -> ``(B, D)``."""
        dtype = self.model.visual.conv1.weight.dtype
        return self.model.encode_image(pixels.to(self.device, dtype))

    def encode_windows(self, pixels: torch.Tensor, windows, chunk: int = 4096) -> Any:
        """WinCLIP's window-masked encoding (:func:`.windows.encode_windows`): image,
        per-scale window and patch embeddings of one pass; ``chunk`` window sequences
        per transformer call."""
        from anomalign.backbones.windows import encode_windows

        return encode_windows(self.model.visual, pixels.to(self.device), windows, chunk)

    @cached_property
    def text(self) -> TextEncoder:
        """The text encoder (prompt lists and learnable prompt embeddings)."""
        return TextEncoder(self.model, self.tokenizer, name=self.spec.arch)


@contextmanager
def _quiet_root_warnings():
    """Silence root-logger warnings (open_clip's) for the duration of the block."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def _create(arch: str, pretrained: str | None, force_quick_gelu: bool, device) -> nn.Module:
    import open_clip

    try:
        return open_clip.create_model(
            arch,
            pretrained=pretrained,
            device=device,
            force_quick_gelu=force_quick_gelu,
            weights_only=True,
            load_weights=pretrained is not None or arch.startswith(("hf-hub:", "local-dir:")),
        )
    except RuntimeError as error:
        if "Model config for" in str(error) or "not found" in str(error).lower():
            raise ConfigError(
                f"Unknown backbone architecture '{arch}': {error}. "
                "Run `anomalign info` to list the known architectures."
            ) from error
        raise


def _check_local_dir(spec: BackboneSpec) -> None:
    folder = Path(spec.value).expanduser()
    if not folder.is_dir():
        raise WeightsUnavailableError(
            f"Backbone '{spec}': folder '{folder}' does not exist.\n" + how_to_provide(spec)
        )
    if not (folder / HF_CONFIG).is_file():
        raise WeightsUnavailableError(
            f"Backbone '{spec}': '{folder}' has no {HF_CONFIG}; expected an open_clip model "
            "folder (config JSON plus open_clip_model.safetensors)."
        )


def _check_hf_hub_cached(spec: BackboneSpec) -> None:
    from huggingface_hub import try_to_load_from_cache

    if offline() and not isinstance(try_to_load_from_cache(spec.value, HF_CONFIG), str):
        raise WeightsUnavailableError(
            f"Backbone '{spec}' is not in the Hugging Face cache "
            f"({os.environ.get('HF_HOME', '~/.cache/huggingface')}) and the environment is "
            "offline.\n" + how_to_provide(spec)
        )


def _build_model(spec: BackboneSpec, device: torch.device, cache_dir: str | None):
    """Create the open_clip model for ``spec``; return it and the weights path used."""
    register_model_configs()
    if spec.source is WeightSource.RANDOM:
        with torch.random.fork_rng(devices=[]), _quiet_root_warnings():
            # open_clip logs its own "initialized randomly" warning; ours below says more.
            torch.manual_seed(RANDOM_INIT_SEED)
            model = _create(spec.arch, None, False, device)
        warn_untrained(spec)
        return model, None
    if spec.source is WeightSource.FILE:
        path = checked_weights_file(spec, how_to_provide(spec))
        try:
            return _create(spec.arch, str(path), False, device), str(path)
        except ConfigError:
            raise
        except Exception as error:  # any refusal: one line naming the file
            raise refused_checkpoint(spec, path, error) from None
    if spec.source is WeightSource.TAG:
        quick_gelu = bool(pretrained_cfg(spec.arch, spec.value).get("quick_gelu", False))
        path = resolve_tag_weights(spec, cache_dir)
        force = quick_gelu and not spec.arch.endswith("-quickgelu")
        return _create(spec.arch, str(path), force, device), str(path)
    if spec.source is WeightSource.LOCAL_DIR:
        _check_local_dir(spec)
    else:
        _check_hf_hub_cached(spec)
    try:
        return _create(str(spec), None, False, device), spec.value
    except (OSError, RuntimeError) as error:
        raise WeightsUnavailableError(
            f"Backbone '{spec}' could not be loaded: {error}\n" + how_to_provide(spec)
        ) from error


def load_open_clip(
    parsed: BackboneSpec,
    device: str | torch.device = "cpu",
    precision: Precision = "fp32",
    cache_dir: str | None = None,
) -> OpenCLIPBackbone:
    """Load a frozen open_clip CLIP backbone (see :mod:`anomalign.backbones.spec`).

    Raises :class:`~anomalign.errors.WeightsUnavailableError` within seconds when the
    weights are neither cached nor downloadable, with instructions for local files.
    """
    import open_clip

    device = torch.device(device)
    started = time.perf_counter()
    model, weights_path = _build_model(parsed, device, cache_dir)
    model = model.to(device=device, dtype=PRECISIONS[precision]).eval()
    model.requires_grad_(False)
    cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
    size = cfg.get("size", model.visual.image_size)
    size = (size, size) if isinstance(size, int) else tuple(size)
    preprocessor = ImagePreprocessor(
        image_size=(int(size[0]), int(size[1])),
        mean=tuple(cfg.get("mean", ImagePreprocessor.mean)),
        std=tuple(cfg.get("std", ImagePreprocessor.std)),
    )
    tokenizer_name = (
        str(parsed) if parsed.arch.startswith(("hf-hub:", "local-dir:")) else parsed.arch
    )
    tokenizer = open_clip.get_tokenizer(tokenizer_name)
    return OpenCLIPBackbone(
        parsed,
        model,
        tokenizer,
        preprocessor,
        precision,
        weights_path,
        load_seconds=time.perf_counter() - started,
    )
