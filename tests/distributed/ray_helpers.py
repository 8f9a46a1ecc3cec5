"""Inputs for the scale-out tests (a module of its own: every test folder has a conftest)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

CATEGORY = "synth_texture"


def make_inputs(ray_synth: Path, folder: Path) -> Path:
    """The 9 test images, plus a non-image and a truncated PNG (two error rows)."""
    shutil.copytree(ray_synth / CATEGORY / "test", folder)
    (folder / "broken").mkdir()
    (folder / "broken" / "garbage.png").write_text("not an image")
    rng = np.random.default_rng(0)
    truncated = folder / "broken" / "truncated.png"
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    return folder
