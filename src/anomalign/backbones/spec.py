"""Backbone spec strings: which architecture, and where its weights come from.

Accepted forms (see :func:`parse_backbone_spec`):

* ``ARCH:TAG``: an open_clip architecture and pretrained tag, e.g.
  ``ViT-B-16-plus-240:laion400m_e32`` (the backbone of both papers) or ``ViT-L-14-336:openai``;
* ``ARCH:/path/to/checkpoint.{bin,pt,pth,safetensors}``: a local checkpoint file;
* ``ARCH:random``: random initialisation, for tests and pipeline checks only;
* ``hf-hub:org/repo``: an open_clip model on the Hugging Face Hub (config and weights);
* ``local-dir:/path``: a folder with ``open_clip_config.json`` and weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from anomalign.errors import ConfigError

CHECKPOINT_SUFFIXES = (".bin", ".pt", ".pth", ".safetensors")
RANDOM_TAG = "random"


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

    @property
    def untrained(self) -> bool:
        """True when the weights are random: results carry an "untrained backbone" flag."""
        return self.source is WeightSource.RANDOM

    def __str__(self) -> str:
        if self.source in (WeightSource.HF_HUB, WeightSource.LOCAL_DIR):
            return f"{self.source.value}:{self.value}"
        return f"{self.arch}:{self.value}"


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
