"""The user-facing FineGrainedAD few-shot detector: fit on k normal images, then predict."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anomalign.backbones import DEFAULT_BACKBONE, Backbone, as_backbone
from anomalign.bundles import DetectorBundle
from anomalign.components.memory import PatchMemory
from anomalign.components.postprocess import gaussian_smooth, upsample
from anomalign.data.images import ImageInput, load_rgb
from anomalign.errors import ConfigError, DataError
from anomalign.methods.base import Detector
from anomalign.methods.finegrainedad.config import FineGrainedADConfig, Preset
from anomalign.methods.finegrainedad.model import FineGrainedADModel, matching_keys
from anomalign.methods.finegrainedad.prompt_learner import (
    MultiLevelPromptLearner,
    build_prompt_texts,
)
from anomalign.methods.finegrainedad.train import (
    compute_region_weights,
    encode_shots,
    train_learner,
)
from anomalign.methods.registry import register_method
from anomalign.prompts import (
    CategoryCaption,
    caption_hash,
    derive_vocabularies,
    list_shipped,
    load_shipped,
    resolve_caption,
)
from anomalign.prompts.captions.schema import parse_caption
from anomalign.results import Prediction

CaptionSource = str | Path | CategoryCaption


def _as_size(size: int | tuple[int, int] | None, default: tuple[int, int]) -> tuple[int, int]:
    if size is None:
        return default
    if isinstance(size, int):
        return (size, size)
    return (int(size[0]), int(size[1]))


def _as_list(images: ImageInput | Sequence[ImageInput]) -> list[ImageInput]:
    return list(images) if isinstance(images, list | tuple) else [images]


@register_method(
    "finegrainedad",
    learning="few-shot",
    eval_size=400,  # FineGrainedAD evaluates at 400² (finegrainedad.md §9)
    needs_text=True,
    summary="FineGrainedAD: MFSC captions, multi-level prompts, patch memory, token-wise fusion",
)
class FineGrainedAD(Detector):
    """Few-shot anomaly detection and localisation with fine-grained prompts (FineGrainedAD).

    Args:
        backbone: a spec string (see :func:`anomalign.backbones.load_backbone`) or a
            loaded :class:`Backbone`.
        shots: k, the number of normal images ``fit`` expects (None: any number).
        preset: "default" or "official" (the official code's behaviour, quirks included).
        device, precision: where and how to run the backbone when loading it here.
        **options: any field of :class:`FineGrainedADConfig` to override.
    """

    name = "finegrainedad"
    config_class = FineGrainedADConfig

    def __init__(
        self,
        backbone: str | Backbone = DEFAULT_BACKBONE,
        shots: int | None = None,
        preset: Preset = "default",
        device: str | torch.device = "cpu",
        precision: str = "fp32",
        **options: Any,
    ) -> None:
        super().__init__()
        self.config = FineGrainedADConfig.from_preset(preset, **options)
        self.backbone = as_backbone(backbone, device=device, precision=precision)
        if not self.backbone.has_text:
            raise ConfigError(
                f"FineGrainedAD needs a CLIP backbone with a text tower; '{self.backbone.spec}' "
                "has none."
            )
        self.backbone.check_blocks(self.config.memory_blocks, "FineGrainedAD memory_blocks")
        self.shots = shots
        self.model: FineGrainedADModel | None = None
        self.caption: CategoryCaption | None = None
        self.category: str | None = None
        self.learned: dict[str, torch.Tensor] = {}
        self.fit_info: dict[str, Any] = {}

    # -- fitting ---------------------------------------------------------------------

    @staticmethod
    def _resolve(category: str | None, captions) -> CategoryCaption:
        if isinstance(captions, Mapping):
            if category is None or category not in captions:
                raise ConfigError(f"No caption for category {category!r} in the given mapping.")
            captions = captions[category]
        if captions is None:
            if category is None:
                raise ConfigError("FineGrainedAD.fit needs a category or a caption (captions=).")
            captions = category
        return resolve_caption(captions)

    def get_params(self) -> dict[str, Any]:
        return {**self.config.to_dict(), "shots": self.shots}

    @property
    def logit_scale(self) -> float:
        raw = self.backbone.logit_scale_param
        if raw is None:
            raise ConfigError(f"Backbone '{self.backbone.spec}' has no logit_scale parameter.")
        return raw if self.config.logit_scale == "raw" else float(np.exp(raw))

    def _fit(
        self,
        images: list[ImageInput],
        *,
        category: str | None,
        captions: CaptionSource | Mapping[str, CaptionSource] | None = None,
        progress: bool | None = None,
    ) -> None:
        """Learn the prompts on the k normal images and build the patch memory.

        Args:
            normal_images: the k normal training images (one batch).
            category: the category (also the shipped caption's name when ``captions`` is None).
            captions: a shipped caption name, a caption JSON path, a :class:`CategoryCaption`,
                or a mapping from category to one of those.
            progress: show a progress bar (None: only on a terminal).
        """
        if not images:
            raise ConfigError("FineGrainedAD.fit needs at least one normal image.")
        if self.shots is not None and len(images) != self.shots:
            raise ConfigError(f"FineGrainedAD was built for {self.shots} shots, got {len(images)}.")
        start = time.perf_counter()
        config = self.config
        caption = self._resolve(category, captions)
        vocab = derive_vocabularies([*(load_shipped(n) for n in list_shipped()), caption])
        texts = build_prompt_texts(caption, vocab, config.seed, config.generic_states)
        text = self.backbone.text
        shots = encode_shots(self.backbone, images, config.memory_blocks)
        timings = {"encode": time.perf_counter() - start}
        scale = torch.tensor(self.logit_scale, device=self.backbone.device)
        learner_args = dict(
            n_ctx=config.n_ctx, n_ctx_ab=config.n_ctx_ab, n_pro_ab=config.n_pro_ab, seed=config.seed
        )
        seg = MultiLevelPromptLearner(text, texts, n_pro=config.seg_n_pro, **learner_args)
        cls = MultiLevelPromptLearner(text, texts, n_pro=config.cls_n_pro, **learner_args)
        seg.to(self.backbone.device)
        cls.to(self.backbone.device)
        weights = None
        mark = time.perf_counter()
        if config.region_aggregation:
            weights, _ = compute_region_weights(self.backbone, images, seg, config)
        timings["regions"], mark = time.perf_counter() - mark, time.perf_counter()
        seg_losses = train_learner(
            seg, text, shots.local, scale, config, config.seg_epochs, weights,
            desc="FineGrainedAD seg", progress=progress,
        )  # fmt: skip
        timings["seg_train"], mark = time.perf_counter() - mark, time.perf_counter()
        cls_losses = train_learner(
            cls, text, shots.glob, scale, config, config.cls_epochs, None, reg_loss=False,
            desc="FineGrainedAD cls", progress=progress,
        )  # fmt: skip
        timings["cls_train"] = time.perf_counter() - mark
        with torch.no_grad():
            seg_levels, cls_levels = seg.encode(text), cls.encode(text)
            seg_pairs = torch.stack([seg_levels[n].pair() for n in seg.level_names])
            cls_pairs = torch.stack([cls_levels[n].pair() for n in cls.level_names])
        memory = self._memory(shots.intermediates, from_tokens=True)
        self.model = FineGrainedADModel(
            seg_pairs,
            matching_keys(seg_pairs, config.matching, config.seed),
            cls_pairs,
            matching_keys(cls_pairs, config.matching, config.seed),
            self.logit_scale,
            memory,
            config.fusion,
        )
        self.caption, self.category = caption, category or caption.category
        self.learned = {
            **{f"seg.{k}": v.detach().cpu() for k, v in seg.named_parameters()},
            **{f"cls.{k}": v.detach().cpu() for k, v in cls.named_parameters()},
        }
        self.fit_info = {
            "shots": len(images),
            "fit_seconds": time.perf_counter() - start,
            "timings": timings,
            "seg_losses": seg_losses,
            "cls_losses": cls_losses,
            "seg_epochs": config.seg_epochs,
            "cls_epochs": config.cls_epochs,
            "trainable_parameters": seg.num_trainable() + cls.num_trainable(),
            "level_names": seg.level_names,
        }

    def _memory(self, tensors: dict[int, torch.Tensor], from_tokens: bool) -> PatchMemory:
        config = self.config
        kwargs = dict(
            index=config.memory_index,
            chunk=config.memory_chunk,
            ivf_lists=config.ivf_lists,
            ivf_probe=config.ivf_probe,
            seed=config.seed,
        )
        if from_tokens:
            return PatchMemory.from_tokens(tensors, **kwargs)
        return PatchMemory(tensors, normalized=True, **kwargs)

    # -- inference -------------------------------------------------------------------

    def _pixels(self, images: list[ImageInput]) -> torch.Tensor:
        if self.config.test_bgr:  # the code feeds cv2's BGR test images unconverted
            images = [np.ascontiguousarray(load_rgb(i)[..., ::-1]) for i in images]
        return self.backbone.preprocess(images)

    def _require_fitted(self) -> FineGrainedADModel:
        if self.model is None:
            raise ConfigError("FineGrainedAD is not fitted: call fit() or load() first.")
        return self.model

    @torch.no_grad()
    def branch_maps(self, images: ImageInput | Sequence[ImageInput]) -> dict[str, torch.Tensor]:
        """Raw per-token T and V maps ``(B, h, w)`` and T_img ``(B,)`` (for ablations)."""
        model = self._require_fitted()
        tokens = self.backbone.encode(self._pixels(_as_list(images)), self.config.memory_blocks)
        out = model.branches(tokens)
        h, w = tokens.grid_size
        return {
            "textual": out["textual"].view(-1, h, w).cpu(),
            "visual": out["visual"].view(-1, h, w).cpu(),
            "textual_image": out["textual_image"].cpu(),
        }

    @torch.no_grad()
    def _predict(
        self,
        images: list[ImageInput],
        *,
        category: str | None,
        output_size: int | tuple[int, int] | None,
        batch_size: int,
    ) -> Prediction:
        """Score images and compute anomaly maps.

        Maps: fused per token, bilinear upsampling, Gaussian sigma ``gaussian_sigma``.
        Scores: ``fuse(T_img, max of the upsampled, unsmoothed VAD map)``. ``category``, if
        given, must be the one the detector was fitted on.
        """
        model = self._require_fitted()
        if category is not None and self.category is not None and category != self.category:
            raise ConfigError(
                f"This FineGrainedAD was fitted on category '{self.category}', not '{category}'."
            )
        batch = _as_list(images)
        size = _as_size(output_size, self.backbone.image_size)
        scores, maps = [], []
        for start in range(0, len(batch), batch_size):
            branch = self.branch_maps(batch[start : start + batch_size])
            textual, visual = branch["textual"][:, None], branch["visual"][:, None]
            fused = upsample(model.fuse(textual, visual), size, align_corners=False)
            visual_max = upsample(visual, size, align_corners=False).flatten(1).max(1).values
            scores.append(model.fuse(branch["textual_image"], visual_max))
            maps.append(fused[:, 0])
        map_array = gaussian_smooth(torch.cat(maps).numpy(), self.config.gaussian_sigma)
        info = self._describe()
        return Prediction(torch.cat(scores).numpy(), map_array, info)

    def _describe(self) -> dict[str, Any]:
        """Provenance: method, preset, every option, backbone, caption hash and fit summary."""
        info: dict[str, Any] = {
            "method": self.name,
            "preset": self.config.preset,
            "options": self.config.to_dict(),
            "image_score": "harmonic" if self.config.fusion == "harmonic" else self.config.fusion,
            **self.backbone.describe(),
        }
        if self.caption is not None:
            info.update(category=self.category, caption_hash=caption_hash(self.caption))
        if self.fit_info:
            info.update(
                shots=self.fit_info["shots"],
                trainable_parameters=self.fit_info["trainable_parameters"],
            )
        return info

    # -- persistence -----------------------------------------------------------------

    def _bundle(self) -> DetectorBundle:
        """Tensors: text galleries and matching keys (segmentation and classification), the
        memory banks and the learned prompt parameters. Manifest: options, backbone spec,
        caption (and its hash), logit scale and the fit summary. The bundle runs without
        the captions file or the training images."""
        model = self._require_fitted()
        assert self.caption is not None
        tensors: dict[str, torch.Tensor] = {
            "seg_pairs": model.seg_pairs,
            "seg_keys": model.seg_keys,
            "cls_pairs": model.cls_pairs,
            "cls_keys": model.cls_keys,
            **{f"memory.{b}": bank for b, bank in model.memory.banks.items()},
            **{f"learned.{k}": v for k, v in self.learned.items()},
        }
        return DetectorBundle(
            method=self.name,
            backbone=str(self.backbone.spec),
            config=self.config.to_dict(),
            tensors={k: v.detach().float() for k, v in tensors.items()},
            extra={
                "logit_scale": model.scale,
                "category": self.category,
                "caption": self.caption.to_json_dict(),
                "caption_hash": caption_hash(self.caption),
                "fit": self.fit_info,
                "shots": self.shots,
            },
        )

    @classmethod
    def _restore(cls, bundle: DetectorBundle, backbone: Any, device: str) -> FineGrainedAD:
        """Rebuild a fitted detector; refuses another backbone and a caption that does not
        match its hash."""
        backbone = as_backbone(backbone if backbone is not None else bundle.backbone, device)
        if str(backbone.spec) != bundle.backbone:
            raise ConfigError(
                f"The FineGrainedAD bundle was fitted on backbone '{bundle.backbone}', "
                f"not '{backbone.spec}'."
            )
        config = FineGrainedADConfig.from_dict(bundle.config)
        options = {k: v for k, v in config.to_dict().items() if k != "preset"}
        extra = bundle.extra
        detector = cls(backbone=backbone, shots=extra.get("shots"), preset=config.preset, **options)
        caption = resolve_caption(parse_caption(extra["caption"], source="saved caption"))
        if caption_hash(caption) != extra["caption_hash"]:
            raise DataError("The bundle's stored caption does not match its hash.")
        tensors = {k: v.to(backbone.device) for k, v in bundle.tensors.items()}
        banks = {int(k.split(".", 1)[1]): v for k, v in tensors.items() if k.startswith("memory.")}
        detector.model = FineGrainedADModel(
            tensors["seg_pairs"],
            tensors["seg_keys"],
            tensors["cls_pairs"],
            tensors["cls_keys"],
            extra["logit_scale"],
            detector._memory(banks, from_tokens=False),
            config.fusion,
        )
        detector.caption, detector.category = caption, extra["category"]
        detector.learned = {
            k.split(".", 1)[1]: v.cpu() for k, v in tensors.items() if k.startswith("learned.")
        }
        detector.fit_info = extra["fit"]
        return detector
