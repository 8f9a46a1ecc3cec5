"""Backbone spec strings: which architecture, and where its weights come from.

Accepted forms (see :func:`parse_backbone_spec`):

* ``ARCH:TAG``: an open_clip architecture and pretrained tag, e.g.
  ``ViT-B-16-plus-240:laion400m_e32`` (the backbone of both papers) or ``ViT-L-14-336:openai``;
* ``ARCH:/path/to/checkpoint.{bin,pt,pth,safetensors}``: a local checkpoint file;
* ``ARCH:random``: random initialisation, for tests and pipeline checks only;
* ``hf-hub:org/repo``: an open_clip model on the Hugging Face Hub (config and weights);
* ``local-dir:/path``: a folder with ``open_clip_config.json`` and weights;
* ``timm:MODEL:TAG`` / ``timm:MODEL:/path/to/weights`` / ``timm:MODEL:random``: an image
  model of the timm family (no text tower), e.g. ``timm:wide_resnet50_2:random``.

Without a family prefix a spec names an open_clip model.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from anomalign.errors import ConfigError

CHECKPOINT_SUFFIXES = (".bin", ".pt", ".pth", ".safetensors")
RANDOM_TAG = "random"
#: The backbone of both papers; the default of every CLIP method. Defined here only.
DEFAULT_BACKBONE = "ViT-B-16-plus-240:laion400m_e32"
OPEN_CLIP = "open_clip"
#: Families other than open_clip are named by a prefix: ``timm:resnet18:random``.
PREFIXED_FAMILIES: tuple[str, ...] = ("timm",)


class WeightSource(StrEnum):
    """Where a backbone's weights come from."""

    TAG = "tag"
    FILE = "file"
    RANDOM = "random"
    HF_HUB = "hf-hub"
    LOCAL_DIR = "local-dir"


@dataclass(frozen=True)
class BackboneSpec:
    """A parsed backbone spec: architecture name, weight source and its value."""

    arch: str
    source: WeightSource
    value: str
    family: str = OPEN_CLIP

    @property
    def untrained(self) -> bool:
        """True when the weights are random: results carry an "untrained backbone" flag."""
        return self.source is WeightSource.RANDOM

    def __str__(self) -> str:
        if self.source in (WeightSource.HF_HUB, WeightSource.LOCAL_DIR):
            return f"{self.source.value}:{self.value}"
        prefix = "" if self.family == OPEN_CLIP else f"{self.family}:"
        return f"{prefix}{self.arch}:{self.value}"


def _looks_like_path(value: str) -> bool:
    return (
        value.lower().endswith(CHECKPOINT_SUFFIXES)
        or value.startswith(("/", "./", "../", "~"))
        or "\\" in value
    )


def parse_backbone_spec(spec: str | BackboneSpec) -> BackboneSpec:
    """Parse a spec string; raise :class:`ConfigError` naming the spec when it is malformed."""
    if isinstance(spec, BackboneSpec):
        return spec
    text = str(spec).strip()
    if not text:
        raise ConfigError("Empty backbone spec; expected e.g. 'ViT-B-16-plus-240:laion400m_e32'.")
    family, sep, rest = text.partition(":")
    if sep and family in PREFIXED_FAMILIES:
        inner = parse_backbone_spec(rest)
        if inner.family != OPEN_CLIP or inner.source in (
            WeightSource.HF_HUB,
            WeightSource.LOCAL_DIR,
        ):
            raise ConfigError(
                f"Backbone spec '{text}': expected {family}:MODEL:TAG, {family}:MODEL:/path or "
                f"{family}:MODEL:random."
            )
        return BackboneSpec(inner.arch, inner.source, inner.value, family)
    for prefix, source in (
        ("hf-hub:", WeightSource.HF_HUB),
        ("local-dir:", WeightSource.LOCAL_DIR),
    ):
        if text.startswith(prefix):
            value = text[len(prefix) :]
            if not value:
                raise ConfigError(f"Backbone spec '{text}' names no {source.value} location.")
            return BackboneSpec(arch=text, source=source, value=value)
    arch, sep, value = text.partition(":")
    if not sep or not arch or not value:
        raise ConfigError(
            f"Backbone spec '{text}' is not of the form ARCH:TAG, ARCH:/path/to/checkpoint, "
            "ARCH:random, hf-hub:org/repo or local-dir:/path "
            "(e.g. 'ViT-B-16-plus-240:laion400m_e32')."
        )
    if value == RANDOM_TAG:
        return BackboneSpec(arch=arch, source=WeightSource.RANDOM, value=value)
    if _looks_like_path(value):
        return BackboneSpec(
            arch=arch, source=WeightSource.FILE, value=str(Path(value).expanduser())
        )
    return BackboneSpec(arch=arch, source=WeightSource.TAG, value=value)
