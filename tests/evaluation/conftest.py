"""Fixtures for benchmark tests."""

from __future__ import annotations

import pytest
from bench_helpers import SMALL

from anomalign.evaluation import BenchmarkConfig


@pytest.fixture
def small_config() -> BenchmarkConfig:
    """Two synthetic categories at 64 px, both AnoCLIP variants, fast settings."""
    return BenchmarkConfig(
        dataset="synthetic",
        methods=("anoclip", "anoclip+"),
        backbone="anomalign-tiny:random",
        eval_size=64,
        overlays=2,
        method_options={"*": {"image_score": "single"}, "anoclip+": {"tta_steps": 1}},
        synthetic=SMALL,
    )
