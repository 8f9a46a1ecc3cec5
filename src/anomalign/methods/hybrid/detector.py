"""★ A zero+few-shot hybrid (ours; no published method does this with V-V tokens):
AnoCLIP's V-V text map and a patch memory of the k normal images, both from the same
single encoder pass, fused per token by a weighted harmonic mean; training-free.

* shots = 0 (``fit()`` with no images): exactly AnoCLIP (same code path, same outputs).
* shots = k: per patch token, ``T`` = AnoCLIP's abnormal probability of the V-V token
  and ``V`` = the memory score ``min_j (1 - cos(q, m_j)) / 2`` of the original-path tokens
  of ``memory_blocks`` (averaged over blocks, FineGrainedAD's VAD, finegrainedad.md §4);
  ``fused = 1 / (w / T + (1 - w) / V)`` with ``w = text_weight`` (``w = 1``: the text
  map alone; ``w = 0``: the memory branch alone), then AnoCLIP's grid smoothing and
  upsampling. The image score fuses AnoCLIP's image score with the largest ``V``.

AnoCLIP's own ``anoclip`` / ``anoclip+`` outputs are untouched: this is a separate method.
"""

from __future__ import annotations

from typing import Any

import torch

from anomalign.backbones import DEFAULT_BACKBONE, Backbone
from anomalign.bundles import DetectorBundle, TensorSpec
from anomalign.components.memory import PatchMemory
from anomalign.components.postprocess import upsample
from anomalign.data.images import ImageInput
from anomalign.errors import ConfigError
from anomalign.methods.anoclip.config import Preset
from anomalign.methods.anoclip.detector import AnoCLIP
from anomalign.methods.anoclip.model import AnoCLIPModel
from anomalign.methods.registry import register_method


def weighted_harmonic(text: torch.Tensor, visual: torch.Tensor, weight: float) -> torch.Tensor:
    """``1 / (w / T + (1 - w) / V)``; exactly ``T`` at ``w = 1`` and ``V`` at ``w = 0``;
    zero where the weighted term is zero."""
    if weight >= 1.0:
        return text
    if weight <= 0.0:
        return visual
    denominator = weight * visual + (1.0 - weight) * text
    return text * visual / denominator.clamp_min(torch.finfo(text.dtype).tiny)


@register_method(
    "anoclip-hybrid",
    learning="zero-or-few-shot",
    fixed={"tta": False},
    eval_size=240,
    needs_text=True,
    summary="★ ours: AnoCLIP V-V text map + k-shot patch memory, harmonic per token",
)
class AnoCLIPHybrid(AnoCLIP):
    """AnoCLIP with a k-shot patch memory from the same encoder pass (see the module docs).

    Args:
        memory_blocks: 1-based blocks whose original-path tokens form the memory
            (FineGrainedAD's 3 and 8 on ViT-B by default).
        text_weight: ``w`` of the harmonic fusion (0.5: the plain harmonic mean).
        backbone, tta, preset, device, precision, **options: as :class:`AnoCLIP`.
    """

    def __init__(
        self,
        backbone: str | Backbone = DEFAULT_BACKBONE,
        tta: bool = False,
        preset: Preset = "default",
        device: str | torch.device = "cpu",
        precision: str = "fp32",
        memory_blocks: tuple[int, ...] = (3, 8),
        text_weight: float = 0.5,
        **options: Any,
    ) -> None:
        super().__init__(backbone, tta, preset, device, precision, **options)
        self.memory_blocks = self.backbone.check_blocks(memory_blocks, "memory_blocks")
        if not 0.0 <= float(text_weight) <= 1.0:
            raise ConfigError(f"text_weight must be in [0, 1], got {text_weight}.")
        self.text_weight = float(text_weight)
        self.memory: PatchMemory | None = None

    @property
    def name(self) -> str:  # type: ignore[override]
        return "anoclip-hybrid"

    def get_params(self) -> dict[str, Any]:
        return {
            **super().get_params(),
            "memory_blocks": self.memory_blocks,
            "text_weight": self.text_weight,
        }

    def _encode(self, pixels: torch.Tensor):
        blocks = self.memory_blocks if self.memory is not None else ()
        return self.backbone.encode(pixels, blocks, vv_depth=self.config.vv_depth)

    def _fit(
        self,
        images: list[ImageInput],
        *,
        category: str | None,
        object_name: str | None = None,
        domain: Any = None,
    ) -> None:
        super()._fit(images, category=category, object_name=object_name, domain=domain)
        self.memory = None
        if not images:
            return
        if self.config.tiling == "tiles":
            raise ConfigError("anoclip-hybrid with reference images needs tiling='squash'.")
        banks: dict[int, list[torch.Tensor]] = {b: [] for b in self.memory_blocks}
        for start in range(0, len(images), 8):
            pixels = self.preprocessor(images[start : start + 8]).to(self.backbone.device)
            tokens = self.backbone.encode(pixels, self.memory_blocks, vv_depth=self.config.vv_depth)
            for block in self.memory_blocks:
                banks[block].append(tokens.intermediates[block].float())
        self.memory = PatchMemory.from_tokens({b: torch.cat(t) for b, t in banks.items()})

    def _predict_square(self, model: AnoCLIPModel, items: list, key: str):
        if self.memory is None:  # zero-shot: AnoCLIP itself
            return super()._predict_square(model, items, key)
        pixels = self.preprocessor(items).to(self.backbone.device)
        tokens = self._encode(pixels)
        scores = self._global_scores(model, pixels, tokens)
        with torch.no_grad():
            text = model.probabilities(tokens.local_tokens.float())[..., 1]  # (B, N)
            visual = self.memory.score(tokens.intermediates)  # (B, N)
            fused = weighted_harmonic(text, visual, self.text_weight)
            grid = model.smooth_grid(fused.view(fused.shape[0], 1, *tokens.grid_size))
            maps = upsample(grid, self.backbone.image_size, align_corners=True)[:, 0]
            image = weighted_harmonic(scores.float(), visual.max(dim=1).values, self.text_weight)
        return image, list(maps), []

    def _describe(self) -> dict[str, Any]:
        info = super()._describe()
        info["options"] = {
            **info["options"],
            "memory_blocks": list(self.memory_blocks),
            "text_weight": self.text_weight,
        }
        info["shots"] = 0 if self.memory is None else len(self.fit_record.get("normal_images", []))
        info["ours"] = True
        return info

    def _bundle(self) -> DetectorBundle:
        bundle = super()._bundle()
        bundle.extra = {
            **bundle.extra,
            "memory_blocks": list(self.memory_blocks),
            "text_weight": self.text_weight,
        }
        if self.memory is not None:
            for block, bank in self.memory.banks.items():
                bundle.tensors[f"memory.{block}"] = bank.contiguous()
        return bundle

    @classmethod
    def _bundle_tensors(cls, bundle: DetectorBundle) -> dict[str, TensorSpec]:
        """AnoCLIP's text tensors, plus one memory bank ``(M, W)`` per memory block after a
        k-shot fit."""
        specs = AnoCLIP._bundle_tensors.__func__(cls, bundle)  # type: ignore[attr-defined]
        if any(k.startswith("memory.") for k in bundle.tensors):
            for block in bundle.extra.get("memory_blocks", ()):
                specs[f"memory.{block}"] = TensorSpec(("M", "W"))
        return specs

    @classmethod
    def _restore(cls, bundle: DetectorBundle, backbone: Any, device: str) -> AnoCLIPHybrid:
        extra = bundle.extra
        detector = cls._unfitted_from_bundle(
            bundle,
            backbone,
            device,
            memory_blocks=tuple(extra["memory_blocks"]),
            text_weight=float(extra["text_weight"]),
        )
        plain = AnoCLIP._restore.__func__(AnoCLIP, bundle, detector.backbone, device)  # type: ignore[attr-defined]
        detector.category, detector.object_name = plain.category, plain.object_name
        detector.domain, detector._models = plain.domain, plain._models
        banks = {
            int(k.split(".", 1)[1]): v for k, v in bundle.tensors.items() if k.startswith("memory.")
        }
        if banks:
            detector.memory = PatchMemory(banks, normalized=True)
        return detector
