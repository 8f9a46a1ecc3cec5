"""A fitted FineGrainedAD as a detector bundle (:mod:`anomalign.bundles`).

Tensors: text galleries and matching keys (segmentation and classification), the
memory banks and the learned prompt parameters. Manifest: options, backbone spec,
caption (and its hash), logit scale and the fit summary. The bundle runs without the
captions file or the training images; loading refuses a different backbone and a
caption that does not match its hash.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from pydantic import BaseModel, Field

from anomalign.backbones import Backbone, load_backbone
from anomalign.bundles import DetectorBundle, TensorSpec, check_tensors
from anomalign.errors import ConfigError
from anomalign.methods.finegrainedad.config import FineGrainedADConfig
from anomalign.methods.finegrainedad.model import FineGrainedADModel
from anomalign.prompts import caption_hash, resolve_caption

if TYPE_CHECKING:
    from anomalign.methods.finegrainedad.detector import FineGrainedAD


class FineGrainedADExtra(BaseModel):
    """The ``extra`` entries a FineGrainedAD bundle must hold."""

    logit_scale: float = Field(gt=0, allow_inf_nan=False)
    category: str | None = None
    caption: dict[str, Any]
    caption_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    fit: dict[str, Any] = Field(default_factory=dict)


def bundle_tensors(config: FineGrainedADConfig, learned: list[str]) -> dict[str, TensorSpec]:
    """The tensors a FineGrainedAD bundle of ``config`` holds: segmentation and
    classification galleries ``(L, 2, D)`` with their keys ``(L, D)``, one memory bank
    ``(M, W)`` per memory block, and the learned prompt parameters (any shape)."""
    expected = {
        "seg_pairs": TensorSpec(("Ls", 2, "D")),
        "seg_keys": TensorSpec(("Ls", "D")),
        "cls_pairs": TensorSpec(("Lc", 2, "D")),
        "cls_keys": TensorSpec(("Lc", "D")),
        **{f"memory.{block}": TensorSpec((f"M{block}", "W")) for block in config.memory_blocks},
    }
    for name in learned:
        expected[name] = TensorSpec(None)
    return expected


def to_bundle(detector: FineGrainedAD) -> DetectorBundle:
    """The fitted state of ``detector`` as a bundle."""
    model = detector._require_fitted()
    assert detector.caption is not None
    tensors: dict[str, torch.Tensor] = {
        "seg_pairs": model.seg_pairs,
        "seg_keys": model.seg_keys,
        "cls_pairs": model.cls_pairs,
        "cls_keys": model.cls_keys,
        **{f"memory.{b}": bank for b, bank in model.memory.banks.items()},
        **{f"learned.{k}": v for k, v in detector.learned.items()},
    }
    return DetectorBundle(
        method=detector.name,
        backbone=str(detector.backbone.spec),
        config=detector.config.to_dict(),
        tensors={k: v.detach().float() for k, v in tensors.items()},
        extra={
            "logit_scale": model.scale,
            "category": detector.category,
            "caption": detector.caption.to_json_dict(),
            "caption_hash": caption_hash(detector.caption),
            "fit": detector.fit_info,
        },
    )


def from_bundle(
    cls: type[FineGrainedAD],
    bundle: DetectorBundle,
    backbone: str | Backbone | None,
    device: str | torch.device,
) -> FineGrainedAD:
    """Rebuild a detector from a bundle made by :func:`to_bundle`."""
    if backbone is None:
        backbone = load_backbone(bundle.backbone, device=device)
    elif not isinstance(backbone, Backbone):
        backbone = load_backbone(backbone, device=device)
    if str(backbone.spec) != bundle.backbone:
        raise ConfigError(
            f"The FineGrainedAD bundle was fitted on backbone '{bundle.backbone}', "
            f"not '{backbone.spec}'."
        )
    config = FineGrainedADConfig.from_dict(bundle.config)
    options = {k: v for k, v in config.to_dict().items() if k != "preset"}
    detector = cls(backbone=backbone, preset=config.preset, **options)
    extra = bundle.extra_as(FineGrainedADExtra)
    learned_names = [k for k in bundle.tensors if k.startswith("learned.")]
    check_tensors(
        bundle,
        bundle_tensors(config, learned_names),
        {"D": backbone.embed_dim, "W": backbone.vision_width},
    )
    try:
        caption = resolve_caption(_caption_from(extra.caption))
    except ConfigError as error:
        raise bundle.error(f"its stored caption is invalid: {error}") from None
    if caption_hash(caption) != extra.caption_hash:
        raise bundle.error("its stored caption does not match its hash.")
    tensors = {k: v.to(backbone.device) for k, v in bundle.tensors.items()}
    banks = {int(k.split(".", 1)[1]): v for k, v in tensors.items() if k.startswith("memory.")}
    detector.model = FineGrainedADModel(
        tensors["seg_pairs"],
        tensors["seg_keys"],
        tensors["cls_pairs"],
        tensors["cls_keys"],
        extra.logit_scale,
        detector._memory(banks, from_tokens=False),
        config.fusion,
    )
    detector.caption, detector.category = caption, extra.category
    detector.learned = {
        k.split(".", 1)[1]: v.cpu() for k, v in tensors.items() if k.startswith("learned.")
    }
    detector.fit_info = extra.fit
    return detector


def _caption_from(data: dict[str, Any]):
    from anomalign.prompts.captions.schema import parse_caption

    return parse_caption(data, source="saved caption")
