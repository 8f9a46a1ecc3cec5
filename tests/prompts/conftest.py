"""Fixtures for the caption tests."""

from __future__ import annotations

import copy
from typing import Any

import pytest


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
