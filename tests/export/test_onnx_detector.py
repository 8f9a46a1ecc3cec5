"""OnnxDetector: the Detector interface on onnxruntime, loaded by anomalign.load_detector."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import anomalign
from anomalign.cli import main
from anomalign.errors import ConfigError, DataError
from anomalign.export import OnnxDetector

pytestmark = pytest.mark.filterwarnings("ignore::anomalign.backbones.UntrainedBackboneWarning")
TOLERANCE = 1e-4
CASES = ["anoclip_single", "anoclip_views22", "finegrainedad"]


@pytest.mark.parametrize("case", CASES)
def test_load_detector_dispatches_and_agrees_end_to_end(request, case, image_dir: Path):
    exported = request.getfixturevalue(case)
    onnx = anomalign.load_detector(exported.model)
    assert isinstance(onnx, OnnxDetector) and isinstance(onnx, anomalign.Detector)
    assert onnx.name == exported.detector.name
    reference = exported.detector.predict(image_dir)
    got = onnx.predict(image_dir, batch_size=4)
    assert isinstance(got, anomalign.Prediction)
    assert np.abs(got.scores - reference.scores).max() <= TOLERANCE
    assert np.abs(got.maps - reference.maps).max() <= TOLERANCE
    np.testing.assert_array_equal(got.decisions, reference.decisions)
    assert got.threshold == reference.threshold and got.untrained_backbone
    assert onnx.calibration == exported.detector.calibration


def test_output_sizes_follow_the_detector_api(finegrainedad, image_files):
    onnx = OnnxDetector(finegrainedad.model)
    reference = finegrainedad.detector.predict(image_files, output_size="image")
    got = onnx.predict(image_files, output_size="image")
    assert [m.shape for m in got.maps] == [m.shape for m in reference.maps]
    pairs = zip(got.maps, reference.maps, strict=True)
    assert max(np.abs(a - b).max() for a, b in pairs) <= TOLERANCE
    sized = onnx.predict(image_files[:2], output_size=(30, 50))
    assert sized.maps.shape == (2, 30, 50)


def test_fixed_batch_model_predicts_any_number_of_images(anoclip_single, image_files, tmp_path):
    from anomalign.export import export_detector

    fixed = export_detector(anoclip_single.bundle, tmp_path / "b1.onnx").path
    got = OnnxDetector(fixed).predict(image_files[:3], batch_size=8)
    reference = anoclip_single.detector.predict(image_files[:3])
    assert np.abs(got.scores - reference.scores).max() <= TOLERANCE


def test_what_an_exported_model_refuses_and_what_it_still_does(
    anoclip_single, image_files, normal_images
):
    onnx = OnnxDetector(anoclip_single.model)
    with pytest.raises(ConfigError, match="already fitted"):
        onnx.fit(normal_images)
    with pytest.raises(ConfigError, match="cannot be turned back into a bundle"):
        onnx.to_bundle()
    with pytest.raises(ConfigError, match="exported for category 'bottle'"):
        onnx.predict(image_files[:1], category="carpet")
    with pytest.raises(ConfigError, match="holds its own backbone"):
        anomalign.load_detector(anoclip_single.model, backbone="anomalign-tiny:random")
    before = onnx.fingerprint()
    calibration = onnx.calibrate(normal_images)
    expected_low = anoclip_single.detector.calibration.map_low
    assert calibration.map_low == pytest.approx(expected_low, abs=1e-4)
    threshold = onnx.threshold_at_fpr(normal_images, 0.5)
    assert onnx.threshold is threshold and onnx.fingerprint() != before
    clone = onnx.clone()
    assert clone.threshold == threshold and clone.fingerprint() == onnx.fingerprint()
    described = onnx.describe()
    assert described["exported"]["exporter"] == "torch.onnx.export(dynamo=True)"
    assert described["method"] == "anoclip" and described["category"] == "bottle"


def test_files_that_are_not_anomalign_models_are_one_line_errors(tmp_path: Path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["pixels"], ["score"])],
        "plain",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [1])],
    )
    plain = tmp_path / "plain.onnx"
    onnx.save(helper.make_model(graph), str(plain))
    with pytest.raises(DataError, match="not one exported by `anomalign export`"):
        anomalign.load_detector(plain)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(DataError, match="onnxruntime cannot load"):
        OnnxDetector(broken)
    with pytest.raises(DataError, match="does not exist"):
        OnnxDetector(tmp_path / "missing.onnx")


def test_predict_cli_runs_an_onnx_model(
    finegrainedad, image_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    out = tmp_path / "out"
    args = ["predict", str(finegrainedad.model), str(image_dir), "--out", str(out),
            "--map-format", "npy"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "UNTRAINED BACKBONE" in printed and "6 image(s): 6 predicted" in printed
    with (out / "summary.csv").open() as stream:
        rows = {Path(r["image"]).name: r for r in csv.DictReader(stream)}
    reference = finegrainedad.detector.predict(image_dir, output_size="image")
    names = sorted(p.name for p in image_dir.iterdir())
    for name, score, decision, amap in zip(
        names, reference.scores, reference.decisions, reference.maps, strict=True
    ):
        row = rows[name]
        assert float(row["score"]) == pytest.approx(float(score), abs=TOLERANCE)
        assert row["decision"] == ("anomalous" if decision else "normal")
        saved = np.load(out / row["map"])
        assert saved.shape == amap.shape and np.abs(saved - amap).max() <= TOLERANCE
    summary = json.loads((out / "summary.json").read_text())
    assert summary["detector"]["exported"]["bundle"].endswith("finegrainedad.anomalign")
    assert Image.open(out / rows[names[0]]["overlay"]).size[0] > 0


def test_cuda_uses_the_cuda_provider_or_says_what_is_missing(anoclip_single, image_files):
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(ConfigError, match="CUDAExecutionProvider"):
            OnnxDetector(anoclip_single.model, device="cuda")
        return
    onnx = OnnxDetector(anoclip_single.model, device="cuda")
    assert onnx.describe()["providers"][0] == "CUDAExecutionProvider"
    reference = anoclip_single.detector.predict(image_files[:2])
    assert np.abs(onnx.predict(image_files[:2]).scores - reference.scores).max() <= TOLERANCE


def test_the_service_serves_an_onnx_model(anoclip_single, image_files):
    from anomalign.service import load_served

    served = load_served("exported", anoclip_single.model)
    assert isinstance(served.detector, OnnxDetector)
    rgbs = [np.asarray(Image.open(p).convert("RGB")) for p in image_files[:3]]
    batch = served.predict_batch(rgbs)
    reference = anoclip_single.detector.predict(rgbs)
    assert np.abs(np.asarray(batch.scores) - reference.scores).max() <= TOLERANCE
    assert batch.decisions == [bool(d) for d in reference.decisions]
    assert served.describe()["method"] == "anoclip"
