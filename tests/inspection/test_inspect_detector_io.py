"""fit -> save -> load -> predict gives identical results; the Python API's inputs."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from inspect_helpers import fit_detector
from PIL import Image

import anomalign
from anomalign.backbones import Backbone, UntrainedBackboneWarning
from anomalign.bundles import load_bundle, save_bundle
from anomalign.errors import ConfigError, DataError
from anomalign.methods import Detector, load_detector, register_method, unregister_method
from anomalign.methods.anoclip import AnoCLIP


def _images(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.png"))


def test_fit_save_load_predict_is_identical(
    inspector: Detector, tiny_backbone: Backbone, test_dir: Path, tmp_path: Path
) -> None:
    images = _images(test_dir)
    expected = inspector.predict(images, batch_size=4)
    path = inspector.save(tmp_path / "det.anomalign")
    loaded = load_detector(path, backbone=tiny_backbone)
    got = loaded.predict(images, batch_size=4)
    np.testing.assert_array_equal(got.scores, expected.scores)
    for a, b in zip(got.maps, expected.maps, strict=True):
        np.testing.assert_array_equal(a, b)
    assert got.decisions is not None and expected.decisions is not None
    np.testing.assert_array_equal(got.decisions, expected.decisions)
    assert loaded.threshold == inspector.threshold
    assert loaded.calibration == inspector.calibration
    assert loaded.name == "anoclip+" and loaded.path == path
    assert loaded.fingerprint() == inspector.fingerprint()
    assert got.untrained_backbone and got.info["threshold"] == inspector.threshold.value


def test_bundle_loads_without_training_images_and_its_own_backbone(
    tiny_backbone: Backbone, synth_root: Path, tmp_path: Path
) -> None:
    train = tmp_path / "train"
    shutil.copytree(synth_root / "synth_texture" / "train" / "good", train)
    fitted = fit_detector(
        "anoclip",
        train,
        "synth_texture",
        tiny_backbone,
        method_options={"image_score": "single"},
        out=tmp_path / "det.anomalign",
    )
    assert fitted.path == tmp_path / "det.anomalign"
    shutil.rmtree(train)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedBackboneWarning)
        loaded = anomalign.load_detector(fitted.path)  # builds its own anomalign-tiny:random
    image = _images(synth_root / "synth_texture" / "test")[0]
    np.testing.assert_array_equal(loaded.predict(image).scores, fitted.predict(image).scores)
    bundle = load_bundle(fitted.path)
    assert bundle.extra["calibration"]["n_images"] == 6
    assert bundle.extra["threshold"] is None
    assert len(bundle.extra["fit_record"]["normal_images"]) == 6
    assert set(bundle.tensors) == {"text_pair", "prompt_basis"}


def test_predict_accepts_paths_folders_pil_and_numpy(inspector: Detector, test_dir: Path) -> None:
    path = _images(test_dir)[0]
    rgb = np.asarray(Image.open(path).convert("RGB"))
    by_path = inspector.predict(path)
    by_str = inspector.predict(str(path))
    by_pil = inspector.predict(Image.open(path))
    by_array = inspector.predict([rgb])
    for other in (by_str, by_pil, by_array):
        np.testing.assert_array_equal(other.scores, by_path.scores)
        np.testing.assert_array_equal(other.maps[0], by_path.maps[0])
    folder = inspector.predict(test_dir)
    assert len(folder) == len(_images(test_dir))
    assert folder.maps[0].shape == (64, 64)  # the method's own size (the tiny model's input)
    assert inspector.predict(rgb[:, :32], output_size="image").maps[0].shape == (64, 32)
    sized = inspector.predict([rgb, rgb[:, :32]], output_size=(20, 30))
    assert [m.shape for m in sized.maps] == [(20, 30), (20, 30)]
    wide = inspector.predict(np.zeros((10, 3000, 3), np.uint8), output_size="image")
    assert wide.maps[0].shape == (3, 1024)  # long side capped, aspect kept
    panel = folder.overlay(0, _images(test_dir)[0])
    assert panel.dtype == np.uint8 and panel.shape[0] > 256
    assert folder.decision(0) in ("anomalous", "normal")
    assert folder.map_uint16(0).dtype == np.uint16
    assert "score" in folder.caption(0)


def test_detector_without_threshold_reports_no_decisions(
    tiny_backbone: Backbone, test_dir: Path
) -> None:
    zero_shot = fit_detector("anoclip", backbone=tiny_backbone, category="synth_texture")
    result = zero_shot.predict(_images(test_dir)[:2])
    assert result.decisions is None and result.decision(0) is None
    assert not zero_shot.calibration.calibrated
    assert (zero_shot.calibration.map_low, zero_shot.calibration.map_high) == (0.0, 1.0)
    zero_shot.set_threshold(0.5)
    assert zero_shot.threshold is not None and zero_shot.threshold.mode == "manual"
    assert zero_shot.predict(_images(test_dir)[:2]).decisions is not None


def test_load_dispatch_errors_and_extension(
    inspector: Detector, tiny_backbone: Backbone, tmp_path: Path
) -> None:
    bundle = inspector.to_bundle()
    bundle.method = "no-such-method"
    path = save_bundle(bundle, tmp_path / "odd.anomalign")
    with pytest.raises(ConfigError, match="no-such-method"):
        load_detector(path)
    register_method("no-such-method", learning="zero-shot")(AnoCLIP)
    try:
        loaded = load_detector(path, backbone=tiny_backbone)
        assert isinstance(loaded, AnoCLIP) and isinstance(loaded, Detector)
    finally:
        unregister_method("no-such-method")
    with pytest.raises(ConfigError, match="does not have"):
        load_detector(path)
    with pytest.raises(DataError, match="does not exist"):
        load_detector(tmp_path / "missing.anomalign")


def test_import_anomalign_stays_light() -> None:
    import subprocess
    import sys

    code = "import sys, anomalign; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert callable(anomalign.load_detector)


FGAD_FAST = {"memory_blocks": [1, 2], "seg_epochs": 3, "cls_epochs": 2}


def test_finegrainedad_fit_save_load_predict_is_identical(
    tiny_backbone: Backbone, synth_root: Path, test_dir: Path, tmp_path: Path
) -> None:
    train = _images(synth_root / "synth_texture" / "train" / "good")
    with pytest.raises(ConfigError, match="normal validation images"):
        fit_detector("finegrainedad", train[:2], "synth_texture", tiny_backbone, fpr=0.1)
    fitted = fit_detector(
        "finegrainedad",
        train[:2],
        "synth_texture",
        tiny_backbone,
        method_options=FGAD_FAST,
        val_normal=train[2:],
        fpr=0.25,
        out=tmp_path / "fgad.anomalign",
    )
    assert fitted.calibration.source == "normal validation images (4)"
    assert fitted.threshold is not None and fitted.threshold.stats["achieved_fpr"] == 0.25
    images = _images(test_dir)
    expected = fitted.predict(images)
    loaded = load_detector(tmp_path / "fgad.anomalign", backbone=tiny_backbone)
    got = loaded.predict(images)
    assert loaded.name == "finegrainedad"
    np.testing.assert_array_equal(got.scores, expected.scores)
    np.testing.assert_array_equal(np.stack(got.maps), np.stack(expected.maps))
    np.testing.assert_array_equal(got.decisions, expected.decisions)
