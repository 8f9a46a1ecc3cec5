"""The user-facing FineGrainedAD few-shot detector: fit on k normal images, then predict."""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, Field

from anomalign.backbones import DEFAULT_BACKBONE, Backbone, as_backbone
from anomalign.bundles import DetectorBundle, TensorSpec
from anomalign.components.memory import PatchMemory
from anomalign.components.postprocess import gaussian_smooth, upsample
from anomalign.data.images import METHOD_DECODE_SIDE, ImageInput, load_rgb
from anomalign.data.transforms import resize_linear_cv2
from anomalign.errors import ConfigError
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
    shot_orders,
    train_learner,
)
from anomalign.methods.registry import register_method
from anomalign.prompts import (
    CategoryCaption,
    Vocabularies,
    caption_hash,
    derive_vocabularies,
    generic_caption,
    list_shipped,
    load_shipped,
    resolve_caption,
)
from anomalign.prompts.captions.schema import normalize_category, parse_caption
from anomalign.prompts.captions.store import shipped_dataset
from anomalign.results import Prediction

CaptionSource = str | Path | CategoryCaption
VocabularySource = str | Path | Vocabularies | Mapping[str, Sequence[str]]

#: FineGrainedAD's protocol map size (finegrainedad.md §4: smoothed at 400x400).
EVAL_SIZE = 400

#: Size of the official loaders' first resize (``pre_resize="cv2_1024"``).
PRE_RESIZE = 1024


class GenericCaptionWarning(UserWarning):
    """FineGrainedAD fell back to a generic caption (no MFSC caption for the category)."""


_WARNED_GENERIC: set[str] = set()


def _warn_generic(category: str) -> None:
    if category in _WARNED_GENERIC:
        return
    _WARNED_GENERIC.add(category)
    warnings.warn(
        f"FineGrainedAD: no caption for category {category!r}; using a generic caption "
        "built from the category word (one component, no attributes). Fine-grained "
        "captions usually localise better: build one with `anomalign captions build "
        f"--image GOOD.png --category {category} --out {category}.json` and pass it with "
        "--captions.",
        GenericCaptionWarning,
        stacklevel=4,
    )


def _vocabulary(source: VocabularySource) -> Vocabularies:
    """A vocabulary override: a :class:`Vocabularies`, a mapping or a JSON file with the
    lists ``color``, ``texture``, ``shape``, ``location`` and optionally ``number``."""
    if isinstance(source, Vocabularies):
        return source
    if isinstance(source, str | Path):
        path = Path(source)
        try:
            source = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise ConfigError(f"Cannot read vocabulary file '{path}': {error}") from None
    if not isinstance(source, Mapping):
        raise ConfigError("A vocabulary must be a mapping of attribute name to a list of words.")
    data = {str(k).rstrip("s"): v for k, v in source.items()}
    needed = ("color", "texture", "shape", "location")
    missing = [name for name in needed if name not in data]
    if missing:
        raise ConfigError(f"The vocabulary has no {', '.join(missing)} list.")
    unknown = sorted(set(data) - {*needed, "number"})
    if unknown:
        raise ConfigError(f"The vocabulary has unknown lists {unknown}.")

    def words(name: str) -> tuple[str, ...]:
        values = data.get(name, ("1", "2", "3", "4", "multiple"))
        if isinstance(values, str) or not all(isinstance(v, str) and v for v in values):
            raise ConfigError(f"Vocabulary list {name!r} must be a list of non-empty strings.")
        return tuple(values)

    return Vocabularies(
        colors=words("color"),
        textures=words("texture"),
        shapes=words("shape"),
        locations=words("location"),
        numbers=words("number"),
    )


def derived_vocabularies(caption: CategoryCaption) -> Vocabularies:
    """Vocabularies derived from the shipped captions and ``caption`` itself.

    The synthetic (test-only) captions count only for a synthetic category, so they do
    not add negatives to real ones; a generic caption adds nothing.
    """
    synthetic = caption.category is not None and caption.category in list_shipped("synthetic")
    names = [n for n in list_shipped() if synthetic or shipped_dataset(n) != "synthetic"]
    own = [] if caption.generic else [caption]
    return derive_vocabularies([*(load_shipped(n) for n in names), *own])


def _as_size(size: int | tuple[int, int] | None, default: tuple[int, int]) -> tuple[int, int]:
    if size is None:
        return default
    if isinstance(size, int):
        return (size, size)
    return (int(size[0]), int(size[1]))


def _as_list(images: ImageInput | Sequence[ImageInput]) -> list[ImageInput]:
    return list(images) if isinstance(images, list | tuple) else [images]


class FineGrainedADExtra(BaseModel):
    """The ``extra`` entries a FineGrainedAD bundle must hold."""

    logit_scale: float = Field(gt=0, allow_inf_nan=False)
    category: str | None = None
    caption: dict[str, Any]
    caption_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    fit: dict[str, Any] = Field(default_factory=dict)
    shots: int | None = Field(default=None, ge=1)


@register_method(
    "finegrainedad",
    learning="few-shot",
    eval_size=EVAL_SIZE,  # FineGrainedAD evaluates at 400² (finegrainedad.md §4)
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
        """The given caption, else the shipped one of ``category``, else a generic one
        (with a one-time warning)."""
        if isinstance(captions, Mapping):
            if category is None or category not in captions:
                raise ConfigError(f"No caption for category {category!r} in the given mapping.")
            captions = captions[category]
        if captions is None:
            if category is None:
                raise ConfigError("FineGrainedAD.fit needs a category or a caption (captions=).")
            key = normalize_category(category).split("/")[-1]
            is_file = category.endswith(".json") or Path(category).is_file()
            if not is_file and key not in list_shipped():
                _warn_generic(category)
                return generic_caption(category)
            captions = category
        return resolve_caption(captions)

    def _prepared(self, images: Sequence[ImageInput]) -> list[ImageInput]:
        """The official loaders' cv2-linear 1024 px resize first (``pre_resize``)."""
        if self.config.pre_resize == "none":
            return list(images)
        return [resize_linear_cv2(load_rgb(i), PRE_RESIZE) for i in images]

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
        vocabulary: VocabularySource | None = None,
        initial: Mapping[str, Any] | None = None,
        progress: bool | None = None,
        fast: bool = True,
    ) -> None:
        """Learn the prompts on the k normal images and build the patch memory.

        Args:
            normal_images: the k normal training images (one batch).
            category: the category (also the shipped caption's name when ``captions`` is
                None; a category without a shipped caption gets a generic one, with a
                warning, and the result records ``caption: generic``).
            captions: a shipped caption name, a caption JSON path, a :class:`CategoryCaption`,
                or a mapping from category to one of those.
            vocabulary: attribute vocabularies for the negatives instead of the derived
                ones: a :class:`Vocabularies`, a mapping or a JSON file with the lists
                ``color``, ``texture``, ``shape``, ``location`` (and ``number``), e.g.
                the official lists read by ``anomalign captions import``. Its words are
                compared case-sensitively, as the official code does.
            initial: the initial random tensors to use instead of the seeded draws, for an
                output-level comparison with the official code on identical weights (the
                official run draws them from the global torch RNG after the CLIP init).
                Keys: ``"seg"`` and ``"cls"``, each a mapping with any of
                ``normal_ctx`` ``(n_pro, n_ctx, width)``, ``abnormal_ctx`` ``(n_pro_ab,
                n_ctx_ab, width)``, ``normal_w`` / ``abnormal_w`` ``(4,)`` (relation,
                colour, texture, shape) and ``qformer`` (the Q-Former's state dict,
                ``query_tokens`` included and ignored); under ``"seg"`` also
                ``dpc_noise``: the two ``(k, N_fine)`` uniform tie-break draws of the
                official clustering (``cluster_scope="official"``) and ``shot_orders``:
                one permutation of the k shots per segmentation epoch
                (``shuffle_shots``). Unknown keys are an error.
            progress: show a progress bar (None: only on a terminal).
            fast: False runs the reference (pre-optimisation) training path: full-length
                prompts, per-step products. Same result, slower; for benchmarks and tests.
        """
        if not images:
            raise ConfigError("FineGrainedAD.fit needs at least one normal image.")
        if self.shots is not None and len(images) != self.shots:
            raise ConfigError(f"FineGrainedAD was built for {self.shots} shots, got {len(images)}.")
        start = time.perf_counter()
        config = self.config
        initial = _check_initial(initial)
        caption = self._resolve(category, captions)
        vocab = derived_vocabularies(caption) if vocabulary is None else _vocabulary(vocabulary)
        texts = build_prompt_texts(
            caption, vocab, config.seed, config.generic_states, vocabulary is not None
        )
        text = self.backbone.text
        images = self._prepared(images)
        seg_orders = None
        if config.shuffle_shots:
            seg_orders = initial["seg"].get("shot_orders")
            if seg_orders is None:
                seg_orders = shot_orders(len(images), config.seg_epochs, config.seed)
            first = torch.as_tensor(seg_orders[0]).long()
            images = [images[int(i)] for i in first]  # epoch 0's batch: clustered, weighted
            inverse = first.argsort()  # original shot index -> position in that batch
            seg_orders = [inverse[torch.as_tensor(o).long()] for o in seg_orders]
        aliased = config.memory_features == "aliased"
        shots = encode_shots(self.backbone, images, config.memory_blocks, aliased)
        timings = {"encode": time.perf_counter() - start}
        scale = torch.tensor(self.logit_scale, device=self.backbone.device)
        learner_args = dict(
            n_ctx=config.n_ctx, n_ctx_ab=config.n_ctx_ab, n_pro_ab=config.n_pro_ab, seed=config.seed
        )
        seg_init, cls_init = _learner_initial(initial["seg"]), _learner_initial(initial["cls"])
        seg = MultiLevelPromptLearner(
            text, texts, n_pro=config.seg_n_pro, initial=seg_init, **learner_args
        )
        train_cls = config.image_gallery == "cls"
        cls = seg
        if train_cls:
            cls = MultiLevelPromptLearner(
                text, texts, n_pro=config.cls_n_pro, initial=cls_init, **learner_args
            )
        seg.to(self.backbone.device)
        cls.to(self.backbone.device)
        weights = None
        mark = time.perf_counter()
        truncate = None if fast else False
        if config.region_aggregation:
            noise = initial["seg"].get("dpc_noise")
            weights, _ = compute_region_weights(
                self.backbone,
                images,
                seg,
                config,
                None if noise is None else tuple(noise),
                truncate=truncate,
            )
        timings["regions"], mark = time.perf_counter() - mark, time.perf_counter()
        seg_losses = train_learner(
            seg, text, shots.local, scale, config, config.seg_epochs, weights,
            desc="FineGrainedAD seg", progress=progress, shot_orders=seg_orders,
            precision=config.seg_precision, fast=fast,
        )  # fmt: skip
        timings["seg_train"], mark = time.perf_counter() - mark, time.perf_counter()
        cls_losses: list[float] = []
        if train_cls:
            cls_losses = train_learner(
                cls, text, shots.glob, scale, config, config.cls_epochs, None, reg_loss=False,
                desc="FineGrainedAD cls", progress=progress, fast=fast,
            )  # fmt: skip
        timings["cls_train"] = time.perf_counter() - mark
        average = config.feature_average
        with torch.inference_mode():
            seg_levels = seg.encode(text, truncate=truncate)
            cls_levels = cls.encode(text, truncate=truncate)
            seg_pairs = torch.stack([seg_levels[n].pair(average) for n in seg.level_names])
            cls_pairs = torch.stack([cls_levels[n].pair(average) for n in cls.level_names])
        seg_pairs, cls_pairs = seg_pairs.clone(), cls_pairs.clone()  # plain tensors
        memory = self._memory(shots.intermediates, from_tokens=True)
        seg_keys = matching_keys(
            seg_pairs, config.matching, config.seed, initial["seg"].get("qformer")
        )
        cls_keys = seg_keys
        if train_cls:
            cls_keys = matching_keys(
                cls_pairs, config.matching, config.seed, initial["cls"].get("qformer")
            )
        self.model = FineGrainedADModel(
            seg_pairs, seg_keys, cls_pairs, cls_keys, self.logit_scale, memory, config.fusion
        )
        self.caption, self.category = caption, category or caption.category
        self.learned = {
            **{f"seg.{k}": v.detach().cpu() for k, v in seg.named_parameters()},
            **{f"cls.{k}": v.detach().cpu() for k, v in cls.named_parameters() if train_cls},
        }
        self.fit_info = {
            "shots": len(images),
            "fit_seconds": time.perf_counter() - start,
            "timings": timings,
            "seg_losses": seg_losses,
            "cls_losses": cls_losses,
            "seg_epochs": config.seg_epochs,
            "cls_epochs": config.cls_epochs,
            "trainable_parameters": seg.num_trainable() + (cls.num_trainable() if train_cls else 0),
            "level_names": seg.level_names,
            "caption": "generic" if caption.generic else "mfsc",
            "vocabulary": "given" if vocabulary is not None else "derived",
            "image_gallery": config.image_gallery,
        }
        if vocabulary is not None:
            self.fit_info["vocabulary_lists"] = {k: list(v) for k, v in vocab.as_dict().items()}

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
        images = self._prepared(images)
        if self.config.test_bgr:  # the code feeds cv2's BGR test images unconverted
            images = [
                np.ascontiguousarray(load_rgb(i, max_side=METHOD_DECODE_SIDE)[..., ::-1])
                for i in images
            ]
        return self.backbone.preprocess(images)

    def _require_fitted(self) -> FineGrainedADModel:
        if self.model is None:
            raise ConfigError("FineGrainedAD is not fitted: call fit() or load() first.")
        return self.model

    @torch.no_grad()
    def branch_maps(self, images: ImageInput | Sequence[ImageInput]) -> dict[str, torch.Tensor]:
        """Raw per-token T and V maps ``(B, h, w)`` and T_img ``(B,)`` (for ablations)."""
        model = self._require_fitted()
        tokens = self.backbone.encode(
            self._pixels(_as_list(images)),
            self.config.memory_blocks,
            aliased=self.config.memory_features == "aliased",
        )
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

        Maps: fused per token, bilinear upsampling to ``output_size`` (None: the
        protocol size, 400 x 400), Gaussian sigma ``gaussian_sigma``.
        Scores: ``fuse(T_img, max of the upsampled, unsmoothed VAD map)``. ``category``, if
        given, must be the one the detector was fitted on.
        """
        model = self._require_fitted()
        if category is not None and self.category is not None and category != self.category:
            raise ConfigError(
                f"This FineGrainedAD was fitted on category '{self.category}', not '{category}'."
            )
        batch = _as_list(images)
        size = _as_size(output_size, (EVAL_SIZE, EVAL_SIZE))
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
            info.update(
                category=self.category,
                caption="generic" if self.caption.generic else "mfsc",
                caption_hash=caption_hash(self.caption),
            )
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
                "caption_kind": "generic" if self.caption.generic else "mfsc",
                "fit": self.fit_info,
                "shots": self.shots,
            },
        )

    @classmethod
    def _bundle_tensors(cls, bundle: DetectorBundle) -> dict[str, TensorSpec]:
        """Segmentation and classification galleries ``(L, 2, D)`` with their keys
        ``(L, D)``, one memory bank ``(M, W)`` per memory block of the saved options, and
        the learned prompt parameters (``learned.*``, any shape)."""
        config = FineGrainedADConfig.from_dict(bundle.config)
        expected = {
            "seg_pairs": TensorSpec(("Ls", 2, "D")),
            "seg_keys": TensorSpec(("Ls", "D")),
            "cls_pairs": TensorSpec(("Lc", 2, "D")),
            "cls_keys": TensorSpec(("Lc", "D")),
            **{f"memory.{b}": TensorSpec((f"M{b}", f"W{b}")) for b in config.memory_blocks},
        }
        for name in bundle.tensors:
            if name.startswith("learned."):
                expected[name] = TensorSpec(None)
        return expected

    def _bundle_dims(self) -> dict[str, int]:
        dims: dict[str, int] = {}
        if getattr(self.backbone, "embed_dim", None) is not None:
            dims["D"] = int(self.backbone.embed_dim)
        if getattr(self.backbone, "vision_width", None) is not None:  # ViT: one width
            dims.update(
                {f"W{b}": int(self.backbone.vision_width) for b in self.config.memory_blocks}
            )
        return dims

    @classmethod
    def _restore(cls, bundle: DetectorBundle, backbone: Any, device: str) -> FineGrainedAD:
        """Rebuild a fitted detector; refuses another backbone and a caption that does not
        match its hash."""
        checked = bundle.extra_as(FineGrainedADExtra)
        backbone = as_backbone(backbone if backbone is not None else bundle.backbone, device)
        if str(backbone.spec) != bundle.backbone:
            raise ConfigError(
                f"The FineGrainedAD bundle was fitted on backbone '{bundle.backbone}', "
                f"not '{backbone.spec}'."
            )
        config = FineGrainedADConfig.from_dict(bundle.config)
        options = {k: v for k, v in config.to_dict().items() if k != "preset"}
        extra = bundle.extra
        detector = cls(backbone=backbone, shots=checked.shots, preset=config.preset, **options)
        try:
            caption = resolve_caption(parse_caption(extra["caption"], source="saved caption"))
        except ConfigError as error:
            raise bundle.error(f"its stored caption is invalid: {error}") from None
        if caption_hash(caption) != checked.caption_hash:
            raise bundle.error("its stored caption does not match its hash.")
        tensors = {k: v.to(backbone.device) for k, v in bundle.tensors.items()}
        banks = {int(k.split(".", 1)[1]): v for k, v in tensors.items() if k.startswith("memory.")}
        detector.model = FineGrainedADModel(
            tensors["seg_pairs"],
            tensors["seg_keys"],
            tensors["cls_pairs"],
            tensors["cls_keys"],
            checked.logit_scale,
            detector._memory(banks, from_tokens=False),
            config.fusion,
        )
        detector.caption, detector.category = caption, checked.category
        detector.learned = {
            k.split(".", 1)[1]: v.cpu() for k, v in tensors.items() if k.startswith("learned.")
        }
        detector.fit_info = checked.fit
        return detector


_INITIAL_MODEL_KEYS = {*MultiLevelPromptLearner.INITIAL_KEYS, "qformer"}


def _check_initial(initial: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Validate the ``initial`` argument of :meth:`FineGrainedAD.fit` (see there)."""
    initial = dict(initial or {})
    unknown = sorted(set(initial) - {"seg", "cls"})
    if unknown:
        raise ConfigError(f"Unknown initial groups {unknown}; expected 'seg' and 'cls'.")
    out = {name: dict(initial.get(name) or {}) for name in ("seg", "cls")}
    allowed = {
        "seg": {*_INITIAL_MODEL_KEYS, "dpc_noise", "shot_orders"},
        "cls": _INITIAL_MODEL_KEYS,
    }
    for name, values in out.items():
        bad = sorted(set(values) - allowed[name])
        if bad:
            raise ConfigError(
                f"Unknown initial {name} tensors {bad}; expected some of {sorted(allowed[name])}."
            )
    return out


def _learner_initial(values: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in values.items() if k in MultiLevelPromptLearner.INITIAL_KEYS}
