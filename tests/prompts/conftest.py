"""Fixtures for the caption tests."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from llm_stub import StubServer
from PIL import Image


def _minimal() -> dict[str, Any]:
    return {
        "category": "widget",
        "Level_1": [{"foreground": "widget", "background": "grey"}],
        "Level_2": [
            {
                "entity": ["widget body", "screws"],
                "number": ["1", "2"],
                "location": ["center", "corners"],
                "relation": "Two screws hold the widget body.",
            }
        ],
        "Level_3": [
            {
                "direction": ["flat", "upright"],
                "color": ["teal", "silver"],
                "texture": ["smooth", "metallic"],
                "shape": ["square", "round"],
                "entity_caption": [
                    "A teal widget body, square and smooth, at the center",
                    "Two silver screws with round heads in the corners",
                ],
            }
        ],
        "caption": "A teal square widget held by two silver screws on a grey background.",
        "defects": ["{} with a dent", "{} with a missing screw", "{} with a scratch"],
    }


@pytest.fixture
def caption_data() -> dict[str, Any]:
    """A small valid caption in the official (list-wrapped) JSON shape; a fresh copy."""
    return copy.deepcopy(_minimal())


@pytest.fixture
def stub(monkeypatch) -> Iterator[StubServer]:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    server = StubServer()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def image(tmp_path) -> Path:
    path = tmp_path / "normal.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(path)
    return path
