"""predict_folder: odd images, unreadable files, resume, outputs and their encodings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anomalign.errors import DataError
from anomalign.inspection import predict_folder, read_rows
from anomalign.inspection.predict_run import SUMMARY_CSV, SUMMARY_JSON, SUMMARY_JSONL
from anomalign.methods import Detector


def _odd_images(folder: Path) -> dict[str, Path]:
    """Greyscale, RGBA, 16-bit, 1x1, 4000x3000 and a truncated PNG, plus a non-image."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = {
        "grey": folder / "grey.png",
        "rgba": folder / "rgba.png",
        "deep": folder / "deep16.png",
        "tiny": folder / "tiny.png",
        "large": folder / "large.jpg",
        "truncated": folder / "truncated.png",
        "garbage": folder / "sub" / "garbage.png",
    }
    Image.fromarray(rng.integers(0, 256, (40, 50), dtype=np.uint8)).save(paths["grey"])
    Image.fromarray(rng.integers(0, 256, (30, 30, 4), dtype=np.uint8)).save(paths["rgba"])
    deep = rng.integers(0, 65536, (48, 40), dtype=np.uint16)
    Image.fromarray(deep).save(paths["deep"])
    assert Image.open(paths["deep"]).mode.startswith("I")
    Image.fromarray(np.full((1, 1, 3), 200, np.uint8)).save(paths["tiny"])
    Image.new("RGB", (4000, 3000)).save(paths["large"], quality=50)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(paths["truncated"])
    data = paths["truncated"].read_bytes()
    paths["truncated"].write_bytes(data[: len(data) // 2])
    paths["garbage"].parent.mkdir()
    paths["garbage"].write_text("not an image")
    (folder / "notes.txt").write_text("ignored: not an image suffix")
    return paths


def test_odd_images_are_handled_and_bad_ones_reported(inspector: Detector, tmp_path: Path) -> None:
    _odd_images(tmp_path / "in")
    out = tmp_path / "out"
    run = predict_folder(inspector, [tmp_path / "in"], out, batch_size=3)
    assert run.total == 7 and run.predicted == 5 and run.resumed == 0
    failed = {Path(image).name: error for image, error in run.errors}
    assert set(failed) == {"truncated.png", "garbage.png"}
    assert "truncated.png" in failed["truncated.png"]
    rows = {Path(r["image"]).name: r for r in read_rows(out)}
    assert rows["truncated.png"]["status"] == "error" and rows["truncated.png"]["score"] is None
    for name, (height, width) in {
        "grey.png": (40, 50),
        "rgba.png": (30, 30),
        "deep16.png": (48, 40),
        "tiny.png": (1, 1),
        "large.jpg": (3000, 4000),
    }.items():
        row = rows[name]
        assert row["status"] == "ok" and np.isfinite(row["score"])
        assert (row["height"], row["width"]) == (height, width)
        assert row["decision"] in ("anomalous", "normal") and row["untrained_backbone"]
        encoded = np.asarray(Image.open(out / row["map"]))
        expected = (768, 1024) if name == "large.jpg" else (height, width)
        assert encoded.shape == expected and Image.open(out / row["map"]).mode.startswith("I;16")
        overlay = Image.open(out / row["overlay"])
        assert overlay.mode == "RGB" and max(overlay.size) <= 1024 + 64
    assert rows["garbage.png"]["key"] == "sub/garbage"
    csv_lines = (out / SUMMARY_CSV).read_text().splitlines()
    assert csv_lines[0].startswith("image,key,status,score,decision") and len(csv_lines) == 8
    summary = json.loads((out / SUMMARY_JSON).read_text())
    assert (summary["ok"], summary["errors"]) == (5, 2)
    assert "65535" in summary["map_encoding"] and summary["detector"]["untrained_backbone"]
    assert (out / "grid.png").is_file()


def test_resume_skips_finished_images(
    inspector: Detector, test_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    first = predict_folder(inspector, [test_dir], out, batch_size=4, grid=0)
    assert first.predicted == 9 and not (out / "grid.png").exists()
    # simulate a crash: drop the last two rows and leave half a line behind
    lines = (out / SUMMARY_JSONL).read_text().splitlines()
    (out / SUMMARY_JSONL).write_text("\n".join(lines[:-2]) + '\n{"image": "/x", "sco')
    seen: list[int] = []
    original = type(inspector)._predict

    def counting(self, images, **kwargs):
        seen.append(len(images))
        return original(self, images, **kwargs)

    monkeypatch.setattr(type(inspector), "_predict", counting)
    second = predict_folder(inspector, [test_dir], out, batch_size=4, grid=0)
    assert (second.resumed, second.predicted, sum(seen)) == (7, 2, 2)
    rows = read_rows(out)
    assert len(rows) == 9 and all(r["status"] == "ok" for r in rows)
    third = predict_folder(inspector, [test_dir], out, batch_size=4, grid=0)
    assert (third.resumed, third.predicted) == (9, 0)
    restart = predict_folder(inspector, [test_dir], out, batch_size=4, grid=0, resume=False)
    assert restart.predicted == 9
    assert len((out / SUMMARY_JSONL).read_text().splitlines()) == 9


def test_resume_refuses_another_detector_or_format(
    inspector: Detector, test_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    predict_folder(inspector, [test_dir / "good"], out, grid=0)
    with pytest.raises(DataError, match="map_format"):
        predict_folder(inspector, [test_dir / "good"], out, map_format="npy", grid=0)
    other = inspector.clone(fitted=True)
    other.set_threshold(None)
    with pytest.raises(DataError, match="detector_fingerprint"):
        predict_folder(other, [test_dir / "good"], out, grid=0)


def test_map_files_decode_to_the_maps_and_masks_draw(
    inspector: Detector, synth_root: Path, test_dir: Path, tmp_path: Path
) -> None:
    images = sorted(test_dir.rglob("*.png"))
    result = inspector.predict(images)
    calibration = inspector.calibration
    npy = predict_folder(inspector, [test_dir], tmp_path / "npy", map_format="npy", grid=0)
    png = predict_folder(
        inspector,
        [test_dir],
        tmp_path / "png",
        masks=synth_root / "synth_texture" / "ground_truth",
        cmap="hot",
        grid=4,
    )
    assert npy.predicted == png.predicted == len(images)
    step = (calibration.map_high - calibration.map_low) / 65535
    by_image = {r["image"]: r for r in read_rows(tmp_path / "png")}
    for index, image in enumerate(images):
        row = by_image[str(image.resolve())]
        raw = np.load(tmp_path / "npy" / row["map"].replace(".png", ".npy"))
        np.testing.assert_allclose(raw, result.maps[index], rtol=0, atol=1e-6)
        decoded = calibration.from_uint16(np.asarray(Image.open(tmp_path / "png" / row["map"])))
        clipped = np.clip(raw, calibration.map_low, calibration.map_high)
        assert np.abs(decoded - clipped).max() <= step
        assert row["score"] == pytest.approx(float(result.scores[index]))
        assert ("mask" in row) == (image.parent.name != "good")
    assert Image.open(tmp_path / "png" / "grid.png").size[0] > 0


def test_bad_arguments_are_named(inspector: Detector, test_dir: Path, tmp_path: Path) -> None:
    from anomalign.errors import ConfigError

    with pytest.raises(DataError, match="does not exist"):
        predict_folder(inspector, [tmp_path / "missing"], tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="No images"):
        predict_folder(inspector, [tmp_path / "empty"], tmp_path / "out")
    with pytest.raises(ConfigError, match="map_format"):
        predict_folder(inspector, [test_dir], tmp_path / "out", map_format="tiff")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="colormap"):
        predict_folder(inspector, [test_dir], tmp_path / "out", cmap="viridis")


def test_outputs_inside_an_input_folder_are_not_inputs(
    inspector: Detector, test_dir: Path, tmp_path: Path
) -> None:
    import shutil

    folder = tmp_path / "images"
    shutil.copytree(test_dir / "good", folder)
    first = predict_folder(inspector, [folder], folder / "inspected")
    second = predict_folder(inspector, [folder], folder / "inspected")
    assert first.total == second.total == second.resumed == 3
