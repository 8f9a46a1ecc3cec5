"""The export graphs and the numpy runtime helpers equal the PyTorch code they stand for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from anomalign import AnoCLIP, FineGrainedAD
from anomalign.backbones.preprocess import ImagePreprocessor
from anomalign.export.exporter import ExportError, build_graph, preprocessing_of
from anomalign.export.graphs import GaussianSmoothing
from anomalign.export.metadata import Preprocessing
from anomalign.export.runtime import preprocess

pytestmark = pytest.mark.filterwarnings("ignore::anomalign.backbones.UntrainedBackboneWarning")


@pytest.mark.parametrize(("sigma", "size"), [(4.0, (64, 64)), (1.5, (9, 13)), (6.0, (5, 7))])
def test_gaussian_smoothing_equals_scipy(sigma: float, size: tuple[int, int]) -> None:
    """Same kernel and reflect padding as scipy, also when the radius exceeds the map."""
    maps = np.random.default_rng(0).random((3, *size), dtype=np.float32)
    expected = np.stack([gaussian_filter(m, sigma=sigma) for m in maps])
    got = GaussianSmoothing(sigma, size)(torch.from_numpy(maps)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
def test_numpy_preprocessing_is_bit_identical_to_torch(
    image_files: list[Path], interpolation: str
) -> None:
    torch_pre = ImagePreprocessor((64, 64), interpolation=interpolation)
    pre = Preprocessing((64, 64), torch_pre.mean, torch_pre.std, interpolation)
    expected = torch_pre(image_files).numpy()
    np.testing.assert_array_equal(preprocess(image_files, pre), expected)


def test_bgr_preprocessing_reverses_channels_before_normalising(image_files) -> None:
    pre = Preprocessing((64, 64), (0.1, 0.5, 0.9), (0.2, 0.3, 0.4), "bicubic", "bgr")
    rgb = preprocess(image_files[:1], Preprocessing((64, 64), (0.9, 0.5, 0.1), (0.4, 0.3, 0.2)))
    np.testing.assert_array_equal(preprocess(image_files[:1], pre), rgb[:, ::-1])


@pytest.mark.parametrize(
    "options",
    [
        {"image_score": "single"},
        {"image_score": "views22"},
        {"image_score": "single", "smoothing": "gaussian", "preset": "official"},
        {"image_score": "single", "smoothing": "mean5", "vv_depth": 1},
    ],
)
def test_anoclip_graph_equals_the_detector(tiny_backbone, image_files, options) -> None:
    detector = AnoCLIP(tiny_backbone, **options).fit(category="bottle")
    graph, kind = build_graph(detector)
    assert kind == detector.config.image_score
    expected = detector.predict(image_files)
    with torch.no_grad():
        scores, maps = graph(detector.preprocessor(image_files))
    np.testing.assert_allclose(scores.numpy(), expected.scores, atol=1e-6, rtol=0)
    np.testing.assert_allclose(maps.numpy(), expected.maps, atol=1e-6, rtol=0)
    assert preprocessing_of(detector).interpolation == detector.config.interpolation


@pytest.mark.parametrize("preset", ["default", "official"])
def test_finegrainedad_graph_equals_the_detector(
    tiny_backbone, normal_images, image_files, preset
) -> None:
    detector = FineGrainedAD(
        tiny_backbone, preset=preset, memory_blocks=(1, 2), seg_epochs=1, cls_epochs=1
    ).fit(normal_images, category="bottle", progress=False)
    graph, _ = build_graph(detector)
    pre = preprocessing_of(detector)
    assert pre.channel_order == ("bgr" if preset == "official" else "rgb")
    expected = detector.predict(image_files)
    with torch.no_grad():
        scores, maps = graph(torch.from_numpy(preprocess(image_files, pre)))
    np.testing.assert_allclose(scores.numpy(), expected.scores, atol=1e-6, rtol=0)
    np.testing.assert_allclose(maps.numpy(), expected.maps, atol=1e-6, rtol=0)


def test_what_cannot_be_exported_is_refused(tiny_backbone, normal_images) -> None:
    with pytest.raises(ExportError, match="test-time adaptation"):
        build_graph(AnoCLIP(tiny_backbone, tta=True).fit(category="bottle"))
    with pytest.raises(ExportError, match="tiling='tiles'"):
        build_graph(AnoCLIP(tiny_backbone, tiling="tiles").fit(category="bottle"))
    ivf = FineGrainedAD(
        tiny_backbone, memory_blocks=(1,), memory_index="ivf", seg_epochs=1, cls_epochs=1
    ).fit(normal_images[:1], category="bottle", progress=False)
    with pytest.raises(ExportError, match="memory_index='ivf'"):
        build_graph(ivf)
