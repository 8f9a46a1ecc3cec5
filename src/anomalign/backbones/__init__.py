"""Backbones: loading CLIP models from spec strings and the dual-path (V-V) encoder."""

from anomalign.backbones.dual_path import DualPathEncoder, ImageTokens
from anomalign.backbones.loading import (
    Backbone,
    UntrainedBackboneWarning,
    list_architectures,
    load_backbone,
    register_model_configs,
)
from anomalign.backbones.preprocess import ImagePreprocessor
from anomalign.backbones.spec import BackboneSpec, WeightSource, parse_backbone_spec
from anomalign.backbones.text import TextEncoder
from anomalign.backbones.weights import KNOWN_BACKBONES, find_cached_weights

__all__ = [
    "KNOWN_BACKBONES",
    "Backbone",
    "BackboneSpec",
    "DualPathEncoder",
    "ImagePreprocessor",
    "ImageTokens",
    "TextEncoder",
    "UntrainedBackboneWarning",
    "WeightSource",
    "find_cached_weights",
    "list_architectures",
    "load_backbone",
    "parse_backbone_spec",
    "register_model_configs",
]
