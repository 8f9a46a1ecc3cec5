"""The one backbone factory: a spec string in, a ready, frozen :class:`Backbone` out.

Families register a loader under their name (:func:`register_backbone_family`); the spec
says which family (``timm:...``; no prefix = open_clip), so adding a family is one module.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from anomalign.backbones.base import PRECISIONS, Backbone, Precision
from anomalign.backbones.spec import OPEN_CLIP, BackboneSpec, parse_backbone_spec
from anomalign.errors import ConfigError

FamilyLoader = Callable[[BackboneSpec, torch.device | str, Precision, str | None], Backbone]
_FAMILIES: dict[str, FamilyLoader] = {}


def register_backbone_family(name: str, loader: FamilyLoader) -> None:
    """Make specs of family ``name`` loadable with ``loader(spec, device, precision, cache)``."""
    _FAMILIES[name] = loader


def _builtin_families() -> None:
    if _FAMILIES:
        return
    from anomalign.backbones.openclip_family import load_open_clip
    from anomalign.backbones.timm_family import load_timm

    _FAMILIES.setdefault(OPEN_CLIP, load_open_clip)
    _FAMILIES.setdefault("timm", load_timm)


def load_backbone(
    spec: str | BackboneSpec,
    device: str | torch.device = "cpu",
    precision: Precision = "fp32",
    cache_dir: str | None = None,
) -> Backbone:
    """Load a frozen backbone from a spec string (see :mod:`anomalign.backbones.spec`).

    Raises :class:`~anomalign.errors.WeightsUnavailableError` within seconds when the
    weights are neither cached nor downloadable, with instructions for local files.
    """
    parsed = parse_backbone_spec(spec)
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {sorted(PRECISIONS)}, got '{precision}'.")
    _builtin_families()
    loader = _FAMILIES.get(parsed.family)
    if loader is None:
        raise ConfigError(
            f"Backbone '{parsed}': unknown family '{parsed.family}'; known: {sorted(_FAMILIES)}."
        )
    return loader(parsed, device, precision, cache_dir)


def as_backbone(
    backbone: str | BackboneSpec | Backbone,
    device: str | torch.device = "cpu",
    precision: Precision = "fp32",
) -> Backbone:
    """``backbone`` itself when already loaded, else :func:`load_backbone` of the spec."""
    if isinstance(backbone, Backbone):
        return backbone
    return load_backbone(backbone, device=device, precision=precision)
