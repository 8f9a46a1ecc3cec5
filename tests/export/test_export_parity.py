"""ONNX Runtime agrees with the PyTorch detector: scores and maps within 1e-4, same decisions.

Two comparisons per method: on the same normalised tensors (the torch preprocessor's
output fed to onnxruntime), and end to end from the image files (numpy/Pillow
preprocessing of :mod:`anomalign.export.runtime`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from anomalign.export.exporter import export_detector
from anomalign.export.metadata import ExportMetadata
from anomalign.export.runtime import OnnxSession, preprocess

pytestmark = pytest.mark.filterwarnings("ignore::anomalign.backbones.UntrainedBackboneWarning")
TOLERANCE = 1e-4
CASES = ["anoclip_single", "anoclip_views22", "finegrainedad"]


def _torch_pixels(detector, images) -> np.ndarray:
    """The normalised batch the PyTorch detector itself feeds its backbone."""
    if hasattr(detector, "_pixels"):  # FineGrainedAD: pre-resize and channel order
        return detector._pixels(list(images)).cpu().numpy()
    return detector.preprocessor(images).numpy()


@pytest.mark.parametrize("case", CASES)
def test_same_tensors_give_the_same_scores_maps_and_decisions(request, case, image_files):
    exported = request.getfixturevalue(case)
    reference = exported.detector.predict(image_files)
    session = OnnxSession(exported.model)
    scores, maps = session.run(_torch_pixels(exported.detector, image_files))
    assert maps.shape == reference.maps.shape
    assert np.abs(scores - reference.scores).max() <= TOLERANCE
    assert np.abs(maps - reference.maps).max() <= TOLERANCE
    threshold = exported.detector.threshold
    np.testing.assert_array_equal(threshold.decide(scores), reference.decisions)
    assert 0 < reference.decisions.sum() < len(image_files)  # the threshold splits them


@pytest.mark.parametrize("case", CASES)
def test_end_to_end_from_files_with_numpy_preprocessing(request, case, image_files):
    exported = request.getfixturevalue(case)
    reference = exported.detector.predict(image_files)
    session = OnnxSession(exported.model)
    meta = ExportMetadata.from_props(session.props)
    scores, maps = session.run(preprocess(image_files, meta.preprocessing))
    assert np.abs(scores - reference.scores).max() <= TOLERANCE
    assert np.abs(maps - reference.maps).max() <= TOLERANCE


@pytest.mark.parametrize("case", ["anoclip_single", "finegrainedad"])
def test_dynamic_batch_sizes_one_and_five(request, case, image_files):
    exported = request.getfixturevalue(case)
    session = OnnxSession(exported.model)
    pixels = _torch_pixels(exported.detector, image_files[:5])
    scores5, maps5 = session.run(pixels)
    assert scores5.shape == (5,) and maps5.shape[0] == 5
    singles = [session.run(pixels[i : i + 1]) for i in range(5)]
    np.testing.assert_allclose(np.concatenate([s for s, _ in singles]), scores5, atol=1e-6)
    np.testing.assert_allclose(np.concatenate([m for _, m in singles]), maps5, atol=1e-6)


def test_metadata_makes_the_file_self_describing(finegrainedad):
    model = onnx.load(str(finegrainedad.model))
    onnx.checker.check_model(model, full_check=True)
    meta = ExportMetadata.from_props({p.key: p.value for p in model.metadata_props})
    detector = finegrainedad.detector
    assert meta.method == "finegrainedad"
    assert meta.threshold == detector.threshold.to_dict()
    assert meta.calibration == detector.calibration.to_dict()
    pre = detector.backbone.preprocessor
    assert meta.preprocessing.image_size == tuple(pre.image_size)
    assert meta.preprocessing.mean == pytest.approx(pre.mean)
    assert meta.preprocessing.std == pytest.approx(pre.std)
    assert meta.preprocessing.interpolation == pre.interpolation
    assert meta.map_size == (400, 400) and meta.batch is None  # the protocol map size
    assert meta.preprocessing.pre_resize is None and meta.preprocessing.decode_max_side == 2048
    provenance = meta.provenance
    assert provenance["exporter"] == "torch.onnx.export(dynamo=True)"
    assert provenance["detector"]["untrained_backbone"] is True
    assert provenance["bundle"].endswith("finegrainedad.anomalign")
    assert len(provenance["bundle_sha256"]) == 64


def test_fixed_batch_and_fp16(anoclip_single, image_files, tmp_path: Path):
    fixed = export_detector(anoclip_single.bundle, tmp_path / "fixed.onnx", opset=18)
    assert fixed.opset == 18 and not fixed.dynamic_batch
    session = OnnxSession(fixed.path)
    pixels = _torch_pixels(anoclip_single.detector, image_files[:2])
    assert session.session.get_inputs()[0].shape[0] == 1
    reference = anoclip_single.detector.predict(image_files[:2])
    scores = np.concatenate([session.run(pixels[i : i + 1])[0] for i in range(2)])
    assert np.abs(scores - reference.scores[:2]).max() <= TOLERANCE

    half = export_detector(anoclip_single.bundle, tmp_path / "half.onnx", fp16=True)
    assert half.size_bytes < 0.7 * fixed.size_bytes
    scores, maps = OnnxSession(half.path).run(pixels[:1])
    assert scores.dtype == np.float32
    assert np.abs(scores - reference.scores[:1]).max() <= 2e-3
    assert np.abs(maps - reference.maps[:1]).max() <= 2e-3


def test_overriding_the_image_score_drops_the_threshold(anoclip_views22, tmp_path: Path):
    notes: list[str] = []
    result = export_detector(
        anoclip_views22.bundle, tmp_path / "one.onnx", image_score="single", log=notes.append
    )
    assert result.image_score == "single"
    assert notes and "threshold" in notes[0]
    meta = ExportMetadata.from_props(OnnxSession(result.path).props)
    assert meta.threshold is None and meta.calibration["score_high"] is None
    assert meta.calibration["map_low"] == anoclip_views22.detector.calibration.map_low
    assert meta.outputs["image_score"] == "single"


def test_openvino_export_agrees(finegrainedad, image_files, tmp_path: Path):
    pytest.importorskip("openvino", reason="the openvino package is not installed")
    from anomalign.export.runtime import open_session

    result = export_detector(finegrainedad.bundle, tmp_path / "fg.xml", format="openvino")
    assert (tmp_path / "fg.bin").is_file() and result.format == "openvino"
    session = open_session(result.path)
    meta = ExportMetadata.from_props(session.props)
    assert meta.threshold == finegrainedad.detector.threshold.to_dict()
    reference = finegrainedad.detector.predict(image_files[:1])
    scores, maps = session.run(preprocess(image_files[:1], meta.preprocessing))
    assert np.abs(scores - reference.scores).max() <= TOLERANCE
    assert np.abs(maps - reference.maps).max() <= TOLERANCE
