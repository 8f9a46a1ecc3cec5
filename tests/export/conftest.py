"""Fixtures for the export tests: images on disk, fitted tiny-backbone bundles, exports.

Every bundle is fitted once per session and exported once with a dynamic batch; the
PyTorch detector it was saved from is kept next to it as the parity reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from anomalign import Detector, create_detector
from anomalign.backbones import Backbone
from anomalign.export.exporter import export_detector

CATEGORY = "bottle"
#: Image sizes on disk: square, landscape, portrait, and the model size itself.
SIZES = ((64, 64), (48, 80), (90, 60), (64, 64), (33, 47), (120, 100))


def _texture(seed: int, height: int, width: int, defect: bool) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    stripes = 0.5 + 0.4 * np.sin((xx + yy) * 2 * np.pi / 8)
    image = np.stack([stripes, stripes * 0.8, stripes * 0.6], axis=-1)
    image = np.clip(image + rng.normal(0, 0.03, image.shape), 0, 1)
    if defect:
        top, left = rng.integers(0, max(1, height // 2)), rng.integers(0, max(1, width // 2))
        image[top : top + height // 3, left : left + width // 3] = (1.0, 1.0, 0.15)
    return (image * 255).astype(np.uint8)


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six test images of different sizes (PNG and JPEG), half with a bright defect."""
    root = tmp_path_factory.mktemp("export_images")
    for index, (height, width) in enumerate(SIZES):
        rgb = _texture(index, height, width, defect=index % 2 == 1)
        suffix = ".jpg" if index == 4 else ".png"
        Image.fromarray(rgb).save(root / f"img_{index}{suffix}")
    return root


@pytest.fixture(scope="session")
def image_files(image_dir: Path) -> list[Path]:
    return sorted(image_dir.iterdir())


@pytest.fixture(scope="session")
def normal_images() -> list[np.ndarray]:
    return [_texture(100 + seed, 64, 64, defect=False) for seed in range(2)]


@dataclass
class Exported:
    """A fitted detector, its bundle and its ONNX export (dynamic batch)."""

    detector: Detector
    bundle: Path
    model: Path
    seconds: float


def make_bundle(
    method: str,
    backbone: Backbone,
    normals: list[np.ndarray],
    test_images: list[Path],
    path: Path,
    **options: Any,
) -> Detector:
    """Fit, calibrate on the normals, set a threshold halfway between the two middle test
    scores (so that decisions split the images and no score lies near it) and save."""
    fit_inputs = {"progress": False} if method == "finegrainedad" else {}
    detector = create_detector(method, backbone=backbone, **options)
    detector.fit(normals, category=CATEGORY, **fit_inputs)
    detector.calibrate(normals)
    scores = np.sort(detector.predict(test_images).scores)
    middle = len(scores) // 2
    detector.set_threshold(float(scores[middle - 1] + scores[middle]) / 2, "test midpoint")
    detector.save(path)
    return detector


def _exported(request, name: str, method: str, **options: Any) -> Exported:
    backbone = request.getfixturevalue("tiny_backbone")
    normals = request.getfixturevalue("normal_images")
    files = request.getfixturevalue("image_files")
    root = request.getfixturevalue("tmp_path_factory").mktemp(name)
    detector = make_bundle(method, backbone, normals, files, root / f"{name}.anomalign", **options)
    result = export_detector(root / f"{name}.anomalign", root / f"{name}.onnx", dynamic_batch=True)
    return Exported(detector, root / f"{name}.anomalign", result.path, result.seconds)


FGAD_FAST = dict(memory_blocks=(1, 2), seg_epochs=2, cls_epochs=2)


@pytest.fixture(scope="session")
def anoclip_single(request) -> Exported:
    return _exported(request, "anoclip_single", "anoclip", image_score="single")


@pytest.fixture(scope="session")
def anoclip_views22(request) -> Exported:
    return _exported(request, "anoclip_views22", "anoclip", image_score="views22")


@pytest.fixture(scope="session")
def finegrainedad(request) -> Exported:
    return _exported(request, "finegrainedad", "finegrainedad", **FGAD_FAST)
