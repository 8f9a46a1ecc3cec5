"""Save and load a fitted FineGrainedAD: ``state.safetensors`` + ``fitted.json`` in a folder.

Tensors: text galleries and matching keys (segmentation and classification), the
memory banks, the learned prompt parameters. JSON: options, backbone spec, caption
(and its hash), logit scale and the fit summary. Both files are written to a temporary
name and moved into place with ``os.replace``. Loading refuses a different backbone.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file

from anomalign.backbones import Backbone, load_backbone
from anomalign.errors import ConfigError, DataError
from anomalign.methods.finegrainedad.config import FineGrainedADConfig
from anomalign.methods.finegrainedad.model import FineGrainedADModel
from anomalign.prompts import caption_hash, resolve_caption

if TYPE_CHECKING:
    from anomalign.methods.finegrainedad.detector import FineGrainedAD

FORMAT = "anomalign.finegrainedad/1"
STATE_FILE = "state.safetensors"
META_FILE = "fitted.json"


def _atomic(path: Path, write) -> None:
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(temp)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def save_detector(detector: FineGrainedAD, folder: Path) -> Path:
    """Write the fitted state of ``detector`` into ``folder`` (created if needed)."""
    model = detector._require_fitted()
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {
        "seg_pairs": model.seg_pairs,
        "seg_keys": model.seg_keys,
        "cls_pairs": model.cls_pairs,
        "cls_keys": model.cls_keys,
        **{f"memory.{b}": bank for b, bank in model.memory.banks.items()},
        **{f"learned.{k}": v for k, v in detector.learned.items()},
    }
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in tensors.items()}
    assert detector.caption is not None
    meta: dict[str, Any] = {
        "format": FORMAT,
        "method": detector.name,
        "options": detector.config.to_dict(),
        "backbone": str(detector.backbone.spec),
        "logit_scale": model.scale,
        "category": detector.category,
        "caption": detector.caption.to_json_dict(),
        "caption_hash": caption_hash(detector.caption),
        "fit": detector.fit_info,
    }
    _atomic(folder / STATE_FILE, lambda p: save_file(tensors, p, metadata={"format": FORMAT}))
    _atomic(
        folder / META_FILE,
        lambda p: Path(p).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n"),
    )
    return folder


def load_detector(
    cls: type[FineGrainedAD],
    folder: Path,
    backbone: str | Backbone | None,
    device: str | torch.device,
) -> FineGrainedAD:
    """Rebuild a detector saved by :func:`save_detector`."""
    meta_path, state_path = folder / META_FILE, folder / STATE_FILE
    if not meta_path.is_file() or not state_path.is_file():
        raise DataError(
            f"'{folder}' is not a saved FineGrainedAD (needs {META_FILE}, {STATE_FILE})."
        )
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT:
        raise DataError(f"'{meta_path}': unknown format {meta.get('format')!r}, expected {FORMAT}.")
    if backbone is None:
        backbone = load_backbone(meta["backbone"], device=device)
    elif not isinstance(backbone, Backbone):
        backbone = load_backbone(backbone, device=device)
    if str(backbone.spec) != meta["backbone"]:
        raise ConfigError(
            f"Saved FineGrainedAD was fitted on backbone '{meta['backbone']}', "
            f"not '{backbone.spec}'."
        )
    config = FineGrainedADConfig.from_dict(meta["options"])
    options = {k: v for k, v in config.to_dict().items() if k != "preset"}
    detector = cls(backbone=backbone, preset=config.preset, **options)
    caption = resolve_caption(_caption_from(meta["caption"]))
    if caption_hash(caption) != meta["caption_hash"]:
        raise DataError(f"'{meta_path}': the stored caption does not match its hash.")
    tensors = {k: v.to(backbone.device) for k, v in load_file(str(state_path)).items()}
    banks = {int(k.split(".", 1)[1]): v for k, v in tensors.items() if k.startswith("memory.")}
    detector.model = FineGrainedADModel(
        tensors["seg_pairs"],
        tensors["seg_keys"],
        tensors["cls_pairs"],
        tensors["cls_keys"],
        meta["logit_scale"],
        detector._memory(banks, from_tokens=False),
        config.fusion,
    )
    detector.caption, detector.category = caption, meta["category"]
    detector.learned = {
        k.split(".", 1)[1]: v.cpu() for k, v in tensors.items() if k.startswith("learned.")
    }
    detector.fit_info = meta["fit"]
    return detector


def _caption_from(data: dict[str, Any]):
    from anomalign.prompts.captions.schema import parse_caption

    return parse_caption(data, source="saved caption")
