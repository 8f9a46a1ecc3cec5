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

from anomalign.backbones import Backbone, load_backbone
from anomalign.bundles import DetectorBundle
from anomalign.errors import ConfigError, DataError
from anomalign.methods.finegrainedad.config import FineGrainedADConfig
from anomalign.methods.finegrainedad.model import FineGrainedADModel
from anomalign.prompts import caption_hash, resolve_caption

if TYPE_CHECKING:
    from anomalign.methods.finegrainedad.detector import FineGrainedAD


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
    extra = bundle.extra
    caption = resolve_caption(_caption_from(extra["caption"]))
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


def _caption_from(data: dict[str, Any]):
    from anomalign.prompts.captions.schema import parse_caption

    return parse_caption(data, source="saved caption")
