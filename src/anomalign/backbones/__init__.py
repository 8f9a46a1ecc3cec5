"""Backbones: the image-encoder seam (:class:`Backbone`), its families (open_clip CLIP with
the dual-path V-V encoder and a text tower; timm image models) and the one factory."""

from anomalign.backbones.base import Backbone, ImageTokens, UntrainedBackboneWarning
from anomalign.backbones.dual_path import DualPathEncoder
from anomalign.backbones.loading import as_backbone, load_backbone, register_backbone_family
from anomalign.backbones.openclip_family import (
    OpenCLIPBackbone,
    list_architectures,
    register_model_configs,
)
from anomalign.backbones.preprocess import ImagePreprocessor
from anomalign.backbones.spec import (
    DEFAULT_BACKBONE,
    BackboneSpec,
    WeightSource,
    parse_backbone_spec,
)
from anomalign.backbones.text import TextEncoder
from anomalign.backbones.timm_family import TimmBackbone
from anomalign.backbones.weights import KNOWN_BACKBONES, find_cached_weights

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
