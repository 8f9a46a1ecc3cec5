"""The WinCLIP / WinCLIP+ detector: zero-shot with no reference images, WinCLIP+ with k."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from anomalign.backbones import DEFAULT_BACKBONE, Backbone, as_backbone
from anomalign.backbones.windows import window_indices
from anomalign.bundles import DetectorBundle, TensorSpec
from anomalign.data.images import ImageInput
from anomalign.data.transforms import resize_map
from anomalign.errors import ConfigError
from anomalign.methods.base import Detector
from anomalign.methods.registry import register_method
from anomalign.methods.winclip.config import Preset, WinCLIPConfig
from anomalign.methods.winclip.model import class_scores, coverage, few_shot_map, zero_shot_map
from anomalign.methods.winclip.prompts import prompt_ensemble
from anomalign.prompts.state_prompts import object_name_for_category
from anomalign.results import Prediction


@register_method(
    "winclip",
    learning="zero-or-few-shot",
    eval_size=240,
    needs_text=True,
    summary="WinCLIP (0-shot) / WinCLIP+ (k-shot): window scores, prompt ensemble",
)
class WinCLIP(Detector):
    """WinCLIP (Jeong et al. CVPR 2023); WinCLIP+ when fitted on normal images.

    Args:
        backbone: an open_clip ViT (default: ViT-B-16-plus-240, the paper's).
        preset: "default" (the paper's values).
        device, precision: where and how to run the backbone when loading it here.
        **options: fields of :class:`WinCLIPConfig`.
    """

    name = "winclip"
    config_class = WinCLIPConfig

    def __init__(
        self,
        backbone: str | Backbone = DEFAULT_BACKBONE,
        preset: Preset = "default",
        device: str | torch.device = "cpu",
        precision: str = "fp32",
        **options: Any,
    ) -> None:
        super().__init__()
        self.config = WinCLIPConfig.from_preset(preset, **options)
        self.backbone = as_backbone(backbone, device=device, precision=precision)
        if not self.backbone.has_text or not hasattr(self.backbone, "encode_windows"):
            raise ConfigError(
                f"WinCLIP needs an open_clip ViT with a text tower; '{self.backbone.spec}' is not."
            )
        grid = self.backbone.grid_size
        self.windows = [window_indices(grid, s) for s in self.config.scales]
        self.covers = [coverage(w, grid[0] * grid[1]) for w in self.windows]
        self.text: dict[str, torch.Tensor] = {}
        self.category: str | None = None
        self.reference_patches: torch.Tensor | None = None
        self.reference_windows: list[torch.Tensor] | None = None

    def text_embeddings(self, category: str | None) -> torch.Tensor:
        """``(2, D)`` mean raw embeddings of the normal and anomalous prompt ensembles."""
        name = object_name_for_category(category)
        if name not in self.text:
            normal, anomalous = prompt_ensemble(name)
            encode = self.backbone.text.encode
            self.text[name] = torch.stack(
                [
                    encode(normal, normalize=False).mean(0),
                    encode(anomalous, normalize=False).mean(0),
                ]
            )
        return self.text[name]

    def _encode(self, images: list[ImageInput]):
        pixels = self.backbone.preprocess(images)
        encode = self.backbone.encode_windows  # type: ignore[attr-defined]
        return encode(pixels, self.windows, self.config.chunk)

    def _fit(self, images: list[ImageInput], *, category: str | None, **inputs: Any) -> None:
        self.category = category
        self.text_embeddings(category)
        self.reference_patches = self.reference_windows = None
        if not images:
            return
        parts = [self._encode(images[s : s + 8]) for s in range(0, len(images), 8)]
        width = parts[0].patches.shape[-1]
        self.reference_patches = torch.cat([p.patches for p in parts]).reshape(-1, width).float()
        self.reference_windows = [
            torch.cat([p.windows[i] for p in parts]).reshape(-1, parts[0].windows[i].shape[-1])
            for i in range(len(self.windows))
        ]

    @property
    def shots(self) -> int:
        if self.reference_patches is None:
            return 0
        grid = self.backbone.grid_size
        return self.reference_patches.shape[0] // (grid[0] * grid[1])

    def score(self, images: list[ImageInput], category: str | None):
        """Image scores ``(B,)`` and patch-grid maps ``(B, h, w)``."""
        text = self.text_embeddings(category or self.category)
        tokens = self._encode(images)
        image = class_scores(tokens.image, text)
        grid_map = zero_shot_map(image, tokens.windows, self.covers, text)
        if self.reference_patches is not None and self.reference_windows is not None:
            few = few_shot_map(
                tokens.patches,
                tokens.windows,
                self.reference_patches,
                self.reference_windows,
                self.covers,
            )
            grid_map = (grid_map + few) / 2
            image = (image + few.max(dim=1).values) / 2
        return image, grid_map.view(-1, *self.backbone.grid_size)

    def _predict(
        self,
        images: list[ImageInput],
        *,
        category: str | None,
        output_size: int | tuple[int, int] | None,
        batch_size: int,
    ) -> Prediction:
        scores, maps = [], []
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                image, grid = self.score(images[start : start + batch_size], category)
                full = F.interpolate(grid[:, None], size=self.backbone.image_size, mode="bilinear")
                scores.append(image.cpu().numpy())
                maps.extend(full[:, 0].cpu().numpy())
        if output_size is not None:
            maps = [resize_map(m, output_size) for m in maps]
        info = self._describe()
        info["category"] = category or self.category
        return Prediction(np.concatenate(scores).astype(np.float32), maps, info)

    def _describe(self) -> dict[str, Any]:
        return {
            "method": self.name,
            "variant": "WinCLIP+" if self.shots else "WinCLIP",
            "shots": self.shots,
            "preset": self.config.preset,
            "options": self.config.to_dict(),
            **self.backbone.describe(),
        }

    def _bundle(self) -> DetectorBundle:
        tensors = {"text": self.text_embeddings(self.category).contiguous()}
        if self.reference_patches is not None and self.reference_windows is not None:
            tensors["reference_patches"] = self.reference_patches.contiguous()
            for i, w in enumerate(self.reference_windows):
                tensors[f"reference_windows.{i}"] = w.contiguous()
        return DetectorBundle(
            self.name,
            str(self.backbone.spec),
            self.config.to_dict(),
            tensors,
            {"category": self.category},
        )

    @classmethod
    def _bundle_tensors(cls, bundle: DetectorBundle) -> dict[str, TensorSpec]:
        """The text pair ``(2, D)``; after a k-shot fit also the reference patch tokens
        ``(kN, W)`` and the reference windows of each scale ``(k n_s, D)``."""
        specs = {"text": TensorSpec((2, "D"))}
        if "reference_patches" in bundle.tensors:
            specs["reference_patches"] = TensorSpec(("KN", "W"))
            scales = bundle.config.get("scales", WinCLIPConfig.scales)
            for i in range(len(scales)):
                specs[f"reference_windows.{i}"] = TensorSpec((f"K{i}", "D"))
        return specs

    @classmethod
    def _restore(cls, bundle: DetectorBundle, backbone: Any, device: str) -> WinCLIP:
        detector = cls._unfitted_from_bundle(bundle, backbone, device)
        detector.category = bundle.extra.get("category")
        detector.text[object_name_for_category(detector.category)] = bundle.tensors["text"]
        if "reference_patches" in bundle.tensors:
            detector.reference_patches = bundle.tensors["reference_patches"]
            detector.reference_windows = [
                bundle.tensors[f"reference_windows.{i}"] for i in range(len(detector.windows))
            ]
        return detector
