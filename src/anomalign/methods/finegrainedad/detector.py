"""The user-facing FineGrainedAD few-shot detector: fit on k normal images, then predict."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anomalign.backbones import Backbone, load_backbone
from anomalign.bundles import DetectorBundle, load_bundle, save_bundle
from anomalign.data.images import ImageInput, load_rgb
from anomalign.errors import ConfigError
from anomalign.methods.finegrainedad.config import FineGrainedADConfig, Preset
from anomalign.methods.finegrainedad.memory import PatchMemory
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
from anomalign.methods.postprocess import gaussian_smooth, upsample
from anomalign.methods.registry import register_method
from anomalign.prompts import (
    CategoryCaption,
    caption_hash,
    derive_vocabularies,
    list_shipped,
    load_shipped,
    resolve_caption,
)
from anomalign.results import Prediction

DEFAULT_BACKBONE = "ViT-B-16-plus-240:laion400m_e32"
CaptionSource = str | Path | CategoryCaption


def _as_size(size: int | tuple[int, int] | None, default: tuple[int, int]) -> tuple[int, int]:
    if size is None:
        return default
    if isinstance(size, int):
        return (size, size)
    return (int(size[0]), int(size[1]))


def _as_list(images: ImageInput | Sequence[ImageInput]) -> list[ImageInput]:
    return list(images) if isinstance(images, list | tuple) else [images]


class FineGrainedAD:
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

    def __init__(
        self,
        backbone: str | Backbone = DEFAULT_BACKBONE,
        shots: int | None = None,
        preset: Preset = "default",
        device: str | torch.device = "cpu",
        precision: str = "fp32",
        **options: Any,
    ) -> None:
        self.config = FineGrainedADConfig.from_preset(preset, **options)
        if isinstance(backbone, Backbone):
            self.backbone = backbone
        else:
            self.backbone = load_backbone(backbone, device=device, precision=precision)
        self.encoder = self.backbone.encoder(None)
        bad = [b for b in self.config.memory_blocks if not 1 <= b <= self.encoder.num_blocks]
        if bad:
            raise ConfigError(
                f"FineGrainedAD memory_blocks {bad} do not exist: the backbone has blocks "
                f"1..{self.encoder.num_blocks}."
            )
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

    @property
    def logit_scale(self) -> float:
        raw = float(self.backbone.model.logit_scale.detach().float())
        return raw if self.config.logit_scale == "raw" else float(np.exp(raw))

    def fit(
        self,
        normal_images: Sequence[ImageInput],
        category: str | None = None,
        captions: CaptionSource | Mapping[str, CaptionSource] | None = None,
        progress: bool | None = None,
        fast: bool = True,
    ) -> FineGrainedAD:
        """Learn the prompts on the k normal images and build the patch memory.

        Args:
            normal_images: the k normal training images (one batch).
            category: the category (also the shipped caption's name when ``captions`` is None).
            captions: a shipped caption name, a caption JSON path, a :class:`CategoryCaption`,
                or a mapping from category to one of those.
            progress: show a progress bar (None: only on a terminal).
            fast: False runs the reference (pre-optimisation) training path: full-length
                prompts, per-step products. Same result, slower; for benchmarks and tests.
        """
        images = _as_list(normal_images)
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
        shots = encode_shots(self.backbone, self.encoder, images, config.memory_blocks)
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
        truncate = None if fast else False
        if config.region_aggregation:
            weights, _ = compute_region_weights(
                self.backbone, self.encoder, images, seg, config, truncate=truncate
            )
        timings["regions"], mark = time.perf_counter() - mark, time.perf_counter()
        seg_losses = train_learner(
            seg, text, shots.local, scale, config, config.seg_epochs, weights,
            desc="FineGrainedAD seg", progress=progress, fast=fast,
        )  # fmt: skip
        timings["seg_train"], mark = time.perf_counter() - mark, time.perf_counter()
        cls_losses = train_learner(
            cls, text, shots.glob, scale, config, config.cls_epochs, None, reg_loss=False,
            desc="FineGrainedAD cls", progress=progress, fast=fast,
        )  # fmt: skip
        timings["cls_train"] = time.perf_counter() - mark
        with torch.inference_mode():
            seg_levels = seg.encode(text, truncate=truncate)
            cls_levels = cls.encode(text, truncate=truncate)
            seg_pairs = torch.stack([seg_levels[n].pair() for n in seg.level_names])
            cls_pairs = torch.stack([cls_levels[n].pair() for n in cls.level_names])
        seg_pairs, cls_pairs = seg_pairs.clone(), cls_pairs.clone()  # plain tensors
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
        return self

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
        tokens = self.encoder(
            self._pixels(_as_list(images)), intermediate_blocks=self.config.memory_blocks
        )
        out = model.branches(tokens)
        h, w = tokens.grid_size
        return {
            "textual": out["textual"].view(-1, h, w).cpu(),
            "visual": out["visual"].view(-1, h, w).cpu(),
            "textual_image": out["textual_image"].cpu(),
        }

    @torch.no_grad()
    def predict(
        self,
        images: ImageInput | Sequence[ImageInput],
        category: str | None = None,
        output_size: int | tuple[int, int] | None = None,
        batch_size: int = 8,
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
        info = self.describe()
        return Prediction(torch.cat(scores).numpy(), map_array, info)

    def describe(self) -> dict[str, Any]:
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

    def to_bundle(self) -> DetectorBundle:
        """The fitted state as a detector bundle (see :mod:`anomalign.bundles`)."""
        from anomalign.methods.finegrainedad.persistence import to_bundle

        return to_bundle(self)

    @classmethod
    def from_bundle(
        cls,
        bundle: DetectorBundle,
        backbone: str | Backbone | None = None,
        device: str | torch.device = "cpu",
    ) -> FineGrainedAD:
        """Rebuild a fitted detector; the backbone must match the one it was fitted on."""
        from anomalign.methods.finegrainedad.persistence import from_bundle

        return from_bundle(cls, bundle, backbone, device)

    def save(self, path: str | Path) -> Path:
        """Save the fitted state to one bundle file (safetensors + JSON manifest)."""
        return save_bundle(self.to_bundle(), path)

    @classmethod
    def load(
        cls,
        path: str | Path,
        backbone: str | Backbone | None = None,
        device: str | torch.device = "cpu",
    ) -> FineGrainedAD:
        """Load a detector saved with :meth:`save`; the backbone must match the saved one."""
        return cls.from_bundle(load_bundle(path), backbone, device)


@register_method("finegrainedad")
def _finegrainedad(**kwargs: Any) -> FineGrainedAD:
    return FineGrainedAD(**kwargs)
