"""The user-facing AnoCLIP / AnoCLIP+ detector: images in, :class:`Prediction` out."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field

from anomalign.backbones import DEFAULT_BACKBONE, Backbone, as_backbone
from anomalign.bundles import DetectorBundle, TensorSpec
from anomalign.components.postprocess import gaussian_smooth
from anomalign.data.images import METHOD_DECODE_SIDE, ImageInput, load_rgb
from anomalign.data.tiling import stitch_tiles, tile_image
from anomalign.data.transforms import resize_map
from anomalign.errors import ConfigError
from anomalign.methods.anoclip.config import AnoCLIPConfig, Preset
from anomalign.methods.anoclip.model import AnoCLIPModel
from anomalign.methods.anoclip.views import augmented_views
from anomalign.methods.base import Detector
from anomalign.methods.registry import register_method
from anomalign.prompts.state_prompts import (
    Domain,
    build_state_prompts,
    domain_for_category,
    object_name_for_category,
)
from anomalign.results import Prediction

VIEW_BATCH = 32


class AnoCLIPExtra(BaseModel):
    """The ``extra`` entries an AnoCLIP bundle must hold (the prompt subject)."""

    category: str | None = None
    object_name: str = Field(min_length=1)
    domain: Domain


_PROTOCOL = dict(
    learning="zero-shot",
    eval_size=240,  # AnoCLIP squashes MVTec images to 240 (anoclip.md §1, §5)
    # the official VisA script tiles the long side and uses the linear adapter (§1, §7)
    dataset_defaults={"visa": {"tiling": "tiles", "adapter": "linear"}},
    needs_text=True,
)


@register_method(
    "anoclip",
    fixed={"tta": False},
    summary="AnoCLIP: V-V local tokens + state prompts",
    **_PROTOCOL,
)
@register_method(
    "anoclip+", fixed={"tta": True}, summary="AnoCLIP+: AnoCLIP with the test-time adapter",
    **_PROTOCOL,
)  # fmt: skip
class AnoCLIP(Detector):
    """Zero-shot anomaly detection and localisation (AnoCLIP; AnoCLIP+ with ``tta=True``).

    Args:
        backbone: a spec string (see :func:`anomalign.backbones.load_backbone`) or a
            loaded :class:`Backbone`.
        tta: enable the test-time adapter (AnoCLIP+).
        preset: "default" or "official" (bit-for-bit behaviour of the official code).
        device, precision: where and how to run the backbone when loading it here.
        **options: any field of :class:`AnoCLIPConfig` to override.
    """

    def __init__(
        self,
        backbone: str | Backbone = DEFAULT_BACKBONE,
        tta: bool = False,
        preset: Preset = "default",
        device: str | torch.device = "cpu",
        precision: str = "fp32",
        **options: Any,
    ) -> None:
        super().__init__()
        self.config = AnoCLIPConfig.from_preset(preset, tta=tta, **options)
        self.backbone = as_backbone(backbone, device=device, precision=precision)
        if not self.backbone.has_text:
            raise ConfigError(
                f"AnoCLIP needs a CLIP backbone with a text tower; '{self.backbone.spec}' has none."
            )
        self.preprocessor = replace(
            self.backbone.preprocessor, interpolation=self.config.interpolation
        )
        self._models: dict[tuple[str, str, bool], AnoCLIPModel] = {}
        self._category_tta: dict[str, tuple[torch.nn.Module, torch.optim.Optimizer]] = {}
        self._run_generator = torch.Generator().manual_seed(self.config.seed)
        self.category: str | None = None
        self.object_name: str | None = None
        self.domain: Domain | None = None

    config_class = AnoCLIPConfig

    @property
    def name(self) -> str:  # type: ignore[override]
        return "anoclip+" if self.config.tta else "anoclip"

    def _encode(self, pixels: torch.Tensor):
        return self.backbone.encode(pixels, vv_depth=self.config.vv_depth)

    def _fit(
        self,
        images: list[ImageInput],
        *,
        category: str | None,
        object_name: str | None = None,
        domain: Domain | None = None,
    ) -> None:
        """Zero-shot: no images are needed. Records the prompt subject used by ``predict``
        when it gets no category, and builds its text features now."""
        self.category, self.object_name, self.domain = category, object_name, domain
        self.model_for(category, object_name, domain)

    def reset(self) -> None:
        """Forget the adapters and random stream carried across images (official preset)."""
        self._category_tta.clear()
        self._run_generator = torch.Generator().manual_seed(self.config.seed)

    def _bundle(self) -> DetectorBundle:
        """The detector as a bundle: options, backbone spec and the fitted text features."""
        model = self.model_for(self.category, self.object_name, self.domain)
        name, domain = resolve_prompt_subject(self.category, self.object_name, self.domain)
        return DetectorBundle(
            method=self.name,
            backbone=str(self.backbone.spec),
            config=self.config.to_dict(),
            tensors={"text_pair": model.text_pair, "prompt_basis": model.prompt_basis},
            extra={"category": self.category, "object_name": name, "domain": domain},
        )

    @classmethod
    def _bundle_tensors(cls, bundle: DetectorBundle) -> dict[str, TensorSpec]:
        """The normal/abnormal text pair ``(D, 2)`` and the prompt-embedding basis
        ``(P, D)`` (``D``: the backbone's embedding width)."""
        return {"text_pair": TensorSpec(("D", 2)), "prompt_basis": TensorSpec(("P", "D"))}

    def _bundle_dims(self) -> dict[str, int]:
        width = getattr(self.backbone, "embed_dim", None)
        return {} if width is None else {"D": int(width)}

    @classmethod
    def _restore(cls, bundle: DetectorBundle, backbone: Any, device: str) -> AnoCLIP:
        """Rebuild a detector from a bundle (text features restored, no prompts re-encoded)."""
        bundle.extra_as(AnoCLIPExtra)
        detector = cls._unfitted_from_bundle(bundle, backbone, device)
        extra = bundle.extra
        detector.category = extra.get("category")
        detector.object_name = extra.get("object_name")
        detector.domain = extra.get("domain")
        key = (extra["object_name"], extra["domain"], detector.config.grammatical_prompts)
        detector._models[key] = AnoCLIPModel(
            detector.config, bundle.tensors["text_pair"], bundle.tensors["prompt_basis"]
        ).to(detector.backbone.device)
        return detector

    def model_for(
        self,
        category: str | None = None,
        object_name: str | None = None,
        domain: Domain | None = None,
    ) -> AnoCLIPModel:
        """The AnoCLIP model (text features) for a category, object word and domain."""
        name, domain = resolve_prompt_subject(category, object_name, domain)
        key = (name, domain, self.config.grammatical_prompts)
        if key not in self._models:
            prompts = build_state_prompts(name, domain, self.config.grammatical_prompts)
            encode = self.backbone.text.encode
            normal = encode(prompts.normal, normalize=False)
            abnormal = encode(prompts.abnormal, normalize=False)
            pair = torch.stack(
                [F.normalize(normal.mean(0), dim=-1), F.normalize(abnormal.mean(0), dim=-1)], dim=1
            )
            basis = F.normalize(torch.cat([normal, abnormal]), dim=-1)
            self._models[key] = AnoCLIPModel(self.config, pair, basis).to(self.backbone.device)
        return self._models[key]

    def _global_scores(self, model: AnoCLIPModel, pixels: torch.Tensor, tokens) -> torch.Tensor:
        if self.config.image_score == "single":
            return model.image_scores(tokens.global_token[:, None])
        pre = self.preprocessor
        views = augmented_views(
            pixels, *((pre.mean, pre.std) if self.config.grayscale_on_raw else (None, None))
        )
        batch, count = views.shape[:2]
        flat = views.flatten(0, 1)
        with torch.no_grad():
            encoded = torch.cat(
                [
                    self.backbone.encode_global(flat[i : i + VIEW_BATCH])
                    for i in range(0, flat.shape[0], VIEW_BATCH)
                ]
            )
        return model.image_scores(encoded.view(batch, count, -1))

    def _tta_state(self, model: AnoCLIPModel, category_key: str, count: int = 1):
        """Adapter (``count`` copies), optimizer and random stream for the next images.

        "image" scope: fresh ones seeded alike for every image, so a batch adapts at once
        and equals the images one by one. "category" scope (official): one adapter and
        optimizer per category whose state carries on, and one random stream per run.
        """
        if self.config.optimizer_scope == "image":
            adapter = model.make_adapter(count)
            generator = torch.Generator().manual_seed(self.config.seed)
            return adapter, model.make_optimizer(adapter), generator
        if count != 1:
            raise ValueError("the category-scoped adapter adapts one image at a time")
        if category_key not in self._category_tta:
            adapter = model.make_adapter()
            self._category_tta[category_key] = (adapter, model.make_optimizer(adapter))
        adapter, optimizer = self._category_tta[category_key]
        return adapter, optimizer, self._run_generator

    def _adapted_tokens(self, model: AnoCLIPModel, local: torch.Tensor, key: str):
        """Adapted ``(B, N, D)`` tokens and each image's TTA losses."""
        if self.config.optimizer_scope == "image":
            adapter, optimizer, generator = self._tta_state(model, key, count=len(local))
            return model.adapt(local, adapter, optimizer, generator)
        adapted, losses = [], []
        for tokens in local:  # order matters: the optimizer state carries on
            adapter, optimizer, generator = self._tta_state(model, key)
            out, step_losses = model.adapt(tokens[None], adapter, optimizer, generator)
            adapted.append(out[0])
            losses.extend(step_losses)
        return torch.stack(adapted), losses

    def _predict_square(self, model: AnoCLIPModel, items: list, key: str):
        """Squash-resized batch -> scores ``(B,)``, maps ``(B, S, S)``, TTA losses."""
        pixels = self.preprocessor(items).to(self.backbone.device)
        tokens = self._encode(pixels)
        scores = self._global_scores(model, pixels, tokens)
        local, losses = tokens.local_tokens.float(), []
        if self.config.tta:
            local, losses = self._adapted_tokens(model, local, key)
        with torch.no_grad():
            maps = model.pixel_maps(local, tokens.grid_size, self.backbone.image_size)
        return scores, list(maps), losses

    def _predict_tiled(self, model: AnoCLIPModel, item: ImageInput, key: str):
        """One image in square tiles along its long side (official VisA handling):
        score = mean over tiles of the global-token score; maps stitched, overlaps averaged."""
        height, width = self.backbone.image_size
        if height != width:
            raise ConfigError("tiling='tiles' needs a backbone with a square input size.")
        pre = self.preprocessor
        tiles, boxes, size = tile_image(
            load_rgb(item, max_side=METHOD_DECODE_SIDE), height, pre.interpolation
        )
        pixels = torch.stack([pre.normalize(t) for t in tiles]).to(self.backbone.device)
        tokens = self._encode(pixels)
        score = model.image_scores(tokens.global_token[None])
        local, losses = tokens.local_tokens.float(), []
        if self.config.tta:
            adapter, optimizer, generator = self._tta_state(model, key)
            adapted, losses = model.adapt(
                local[None],
                adapter,
                optimizer,
                generator,
                lambda t: model.stitched_probabilities(t, tokens.grid_size, height, boxes, size),
            )
            local = adapted[0]
        with torch.no_grad():
            tile_maps = model.pixel_maps(local, tokens.grid_size, (height, height))
        return score, [stitch_tiles(tile_maps, boxes, size)], losses

    def _predict(
        self,
        images: list[ImageInput],
        *,
        category: str | None,
        output_size: int | tuple[int, int] | None,
        batch_size: int,
        object_name: str | None = None,
        domain: Domain | None = None,
    ) -> Prediction:
        """Score images and compute anomaly maps.

        Args:
            images: paths, PIL images or arrays.
            category: dataset category (picks the object word and object/texture domain).
            object_name: the word put in the prompts (default: from ``category``, else "object").
            domain: "object" or "texture" (default: from ``category``).
            output_size: map size (int or ``(height, width)``). Default: the model input
                size, or with ``tiling="tiles"`` the stitched size (short side = input size;
                images of different aspect ratios then give maps of different sizes).
            batch_size: images encoded per forward pass (tiled images go one at a time).
        """
        batch = list(images)
        if category is None and object_name is None and domain is None:
            category, object_name, domain = self.category, self.object_name, self.domain
        model = self.model_for(category, object_name, domain)
        key = category or object_name or "object"
        scores, maps, tta_losses = [], [], []
        if self.config.tiling == "tiles":
            for item in batch:
                score, item_maps, losses = self._predict_tiled(model, item, key)
                scores.append(score.float().cpu())
                maps.extend(m.cpu().numpy() for m in item_maps)
                tta_losses.extend(losses)
        else:
            for start in range(0, len(batch), batch_size):
                chunk = batch[start : start + batch_size]
                score, chunk_maps, losses = self._predict_square(model, chunk, key)
                scores.append(score.float().cpu())
                maps.extend(m.cpu().numpy() for m in chunk_maps)
                tta_losses.extend(losses)
        if self.config.smoothing == "gaussian":
            sigma = self.config.gaussian_sigma
            maps = [gaussian_smooth(m[None], sigma)[0] for m in maps]
        if output_size is not None:
            maps = [resize_map(m, output_size) for m in maps]
        info = self._describe()
        name, domain = resolve_prompt_subject(category, object_name, domain)
        info.update(category=category, object_name=name, domain=domain)
        if tta_losses:
            info["tta_losses"] = tta_losses
        return Prediction(torch.cat(scores).numpy(), list(maps), info)

    def _describe(self) -> dict[str, Any]:
        """Provenance: method, preset, every option and the backbone (incl. untrained flag)."""
        return {
            "method": self.name,
            "preset": self.config.preset,
            "options": self.config.to_dict(),
            **self.backbone.describe(),
        }


def resolve_prompt_subject(
    category: str | None, object_name: str | None, domain: Domain | None
) -> tuple[str, Domain]:
    """The object word and domain used in the prompts, from explicit values or the category."""
    return object_name or object_name_for_category(category), domain or domain_for_category(
        category
    )
