"""Shared fixtures: backbones are expensive to build, so each is built once per session."""

from __future__ import annotations

import warnings

import pytest

from anomalign.backbones import Backbone, UntrainedBackboneWarning, load_backbone

TINY_SPEC = "anomalign-tiny:random"
PAPER_ARCH_RANDOM = "ViT-B-16-plus-240:random"


def _load_random(spec: str) -> Backbone:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedBackboneWarning)
        return load_backbone(spec)


@pytest.fixture(scope="session")
def tiny_backbone() -> Backbone:
    """The 2-layer registered test model with seeded random weights."""
    return _load_random(TINY_SPEC)


@pytest.fixture(scope="session")
def paper_backbone() -> Backbone:
    """The real ViT-B-16-plus-240 architecture (both papers' backbone), random weights."""
    return _load_random(PAPER_ARCH_RANDOM)
