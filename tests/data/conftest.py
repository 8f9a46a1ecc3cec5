"""Fixtures of the data-layer tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from data_trees import make_mvtec


@pytest.fixture
def mvtec_root(tmp_path: Path) -> Path:
    return make_mvtec(tmp_path / "mvtec")
