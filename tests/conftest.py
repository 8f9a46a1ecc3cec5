"""Shared fixtures: backbones are expensive to build, so each is built once per session."""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings

import pytest

from anomalign.backbones import Backbone, UntrainedBackboneWarning, load_backbone

TINY_SPEC = "anomalign-tiny:random"
PAPER_ARCH_RANDOM = "ViT-B-16-plus-240:random"
_CACHE_ENV = "ANOMALIGN_CACHE_DIR"
_saved_cache_env: str | None = None
_session_cache_dir: str | None = None


def pytest_configure(config: pytest.Config) -> None:
    """Point the package cache (prompt embeddings) at a temporary folder, never the user's.

    Set before any test runs, so subprocesses (CLI tests) inherit it too.
    """
    global _saved_cache_env, _session_cache_dir
    _saved_cache_env = os.environ.get(_CACHE_ENV)
    _session_cache_dir = tempfile.mkdtemp(prefix="anomalign-test-cache-")
    os.environ[_CACHE_ENV] = _session_cache_dir


def pytest_unconfigure(config: pytest.Config) -> None:
    if _session_cache_dir is not None:
        shutil.rmtree(_session_cache_dir, ignore_errors=True)
    if _saved_cache_env is None:
        os.environ.pop(_CACHE_ENV, None)
    else:
        os.environ[_CACHE_ENV] = _saved_cache_env


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
