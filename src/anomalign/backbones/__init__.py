"""Backbones: the image-encoder seam (:class:`Backbone`), its families (open_clip CLIP with
the dual-path V-V encoder and a text tower; timm image models) and the one factory.

Names are imported on first use (PEP 562), so that ``anomalign.backbones.spec`` (spec
strings, ``DEFAULT_BACKBONE``) can be read without loading torch.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> module that defines it.
_LAZY: dict[str, str] = {
    "Backbone": "anomalign.backbones.base",
    "ImageTokens": "anomalign.backbones.base",
    "UntrainedBackboneWarning": "anomalign.backbones.base",
    "DualPathEncoder": "anomalign.backbones.dual_path",
    "as_backbone": "anomalign.backbones.loading",
    "load_backbone": "anomalign.backbones.loading",
    "register_backbone_family": "anomalign.backbones.loading",
    "OpenCLIPBackbone": "anomalign.backbones.openclip_family",
    "list_architectures": "anomalign.backbones.openclip_family",
    "register_model_configs": "anomalign.backbones.openclip_family",
    "ImagePreprocessor": "anomalign.backbones.preprocess",
    "DEFAULT_BACKBONE": "anomalign.backbones.spec",
    "BackboneSpec": "anomalign.backbones.spec",
    "WeightSource": "anomalign.backbones.spec",
    "parse_backbone_spec": "anomalign.backbones.spec",
    "TextEncoder": "anomalign.backbones.text",
    "TimmBackbone": "anomalign.backbones.timm_family",
    "KNOWN_BACKBONES": "anomalign.backbones.weights",
    "find_cached_weights": "anomalign.backbones.weights",
}

__all__ = [
    "DEFAULT_BACKBONE",
    "KNOWN_BACKBONES",
    "Backbone",
    "BackboneSpec",
    "DualPathEncoder",
    "ImagePreprocessor",
    "ImageTokens",
    "OpenCLIPBackbone",
    "TextEncoder",
    "TimmBackbone",
    "UntrainedBackboneWarning",
    "WeightSource",
    "as_backbone",
    "find_cached_weights",
    "list_architectures",
    "load_backbone",
    "parse_backbone_spec",
    "register_backbone_family",
    "register_model_configs",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'anomalign.backbones' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
