"""Predict folders under hostile conditions: broken outputs, replaced or odd files, races."""

from __future__ import annotations

import json
import math
import os
import shutil
import stat
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from inspect_helpers import fit_detector
from PIL import Image

from anomalign.backbones import Backbone
from anomalign.bundles import save_bundle
from anomalign.cli import main
from anomalign.errors import ConfigError, DataError, NonFiniteResultError
from anomalign.inspection import predict_folder, read_rows
from anomalign.inspection.predict_run import SUMMARY_CSV, SUMMARY_JSONL
from anomalign.methods import Detector
from anomalign.outdir import LOCK_NAME, OutputLock

pytestmark = pytest.mark.filterwarnings("ignore::anomalign.backbones.UntrainedBackboneWarning")


def _strict(text: str) -> Any:
    def refuse(token: str) -> Any:
        raise ValueError(f"{token} is not strict JSON")

    return json.loads(text, parse_constant=refuse)


def _image(path: Path, seed: int, size: tuple[int, int] = (40, 48)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def zero_shot(tiny_backbone: Backbone) -> Detector:
    detector = fit_detector("anoclip", backbone=tiny_backbone, category="synth_texture")
    detector.set_threshold(0.5)
    return detector


@pytest.fixture(scope="module")
def nan_bundle(zero_shot: Detector, tmp_path_factory: pytest.TempPathFactory) -> Path:
    bundle = zero_shot.clone(fitted=True).to_bundle()
    bundle.tensors["text_pair"] = torch.full_like(bundle.tensors["text_pair"], math.nan)
    return save_bundle(bundle, tmp_path_factory.mktemp("nan") / "nan.anomalign")


# -- 1: non-finite results ---------------------------------------------------------------


def test_nan_score_is_an_error_row(
    nan_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = [_image(tmp_path / "in" / f"{i}.png", i) for i in range(3)]
    out = tmp_path / "out"
    assert main(["predict", str(nan_bundle), str(tmp_path / "in"), "--out", str(out)]) == 1
    assert "3 skipped" in capsys.readouterr().out
    lines = (out / SUMMARY_JSONL).read_text(encoding="utf-8").splitlines()
    rows = [_strict(line) for line in lines]
    assert len(rows) == len(images)
    for row in rows:
        assert row["status"] == "error" and row["decision"] is None and row["score"] is None
        assert "non-finite" in row["error"]
    _strict((out / "summary.json").read_text(encoding="utf-8"))
    assert (out / SUMMARY_CSV).is_file()


def test_nan_prediction_raises_instead_of_deciding(
    nan_bundle: Path, tiny_backbone: Backbone, tmp_path: Path
) -> None:
    from anomalign.methods import load_detector

    detector = load_detector(nan_bundle, backbone=tiny_backbone)
    with pytest.raises(NonFiniteResultError, match="non-finite"):
        detector.predict([_image(tmp_path / "a.png", 0)])


# -- 2: resume keyed by content ----------------------------------------------------------


def test_replaced_image_is_predicted_again(zero_shot: Detector, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    target = _image(folder / "part.png", 1)
    _image(folder / "other.png", 2)
    out = tmp_path / "out"
    first = predict_folder(zero_shot, [folder], out, grid=0)
    old = {r["key"]: r for r in read_rows(out)}["part"]
    stamp = target.stat()
    _image(target, 99)  # another image at the same path, same mtime
    os.utime(target, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    second = predict_folder(zero_shot, [folder], out, grid=0)
    assert (first.predicted, second.predicted, second.resumed) == (2, 1, 1)
    new = {r["key"]: r for r in read_rows(out)}["part"]
    assert new["sha256"] != old["sha256"] and new["score"] != old["score"]


# -- 3: output names stay unique across runs ---------------------------------------------


def test_same_name_from_two_folders_gets_two_outputs(zero_shot: Detector, tmp_path: Path) -> None:
    one = _image(tmp_path / "d1" / "img.png", 1)
    two = _image(tmp_path / "d2" / "img.png", 2)
    out = tmp_path / "out"
    predict_folder(zero_shot, [tmp_path / "d1"], out, grid=0)
    first_map = (out / "maps" / "img.png").read_bytes()
    predict_folder(zero_shot, [tmp_path / "d2"], out, grid=0)
    rows = {r["image"]: r for r in read_rows(out)}
    assert set(rows) == {str(one.resolve()), str(two.resolve())}
    maps = {rows[str(p.resolve())]["map"] for p in (one, two)}
    assert maps == {"maps/img.png", "maps/img~2.png"}
    assert (out / "maps" / "img.png").read_bytes() == first_map
    again = predict_folder(zero_shot, [tmp_path / "d1", tmp_path / "d2"], out, grid=0)
    assert again.resumed == 2  # both keep their names and results


# -- 4: names that are not UTF-8 ---------------------------------------------------------


def test_non_utf8_file_name_is_predicted_and_escaped(
    zero_shot: Detector, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    odd = Path(os.fsdecode(bytes(folder) + b"/caf\xe9.png"))
    _image(odd, 3)
    _image(folder / "plain.png", 4)
    bundle = tmp_path / "det.anomalign"
    zero_shot.save(bundle)
    out = tmp_path / "out"
    argv = ["predict", str(bundle), str(folder), "--out", str(out)]
    assert main(argv) == 0
    rows = [_strict(line) for line in (out / SUMMARY_JSONL).read_text("utf-8").splitlines()]
    keys = sorted(r["key"] for r in rows)
    assert keys == ["caf\\xe9", "plain"] and {r["status"] for r in rows} == {"ok"}
    assert (out / SUMMARY_CSV).read_text("utf-8").count("\n") == 3
    assert (out / "grid.png").is_file() and (out / "maps" / "caf\\xe9.png").is_file()
    capsys.readouterr()
    assert main(argv) == 0  # the folder is not poisoned
    assert "2 already done" in capsys.readouterr().out


# -- 5: symbolic link loops and dangling links -------------------------------------------


def test_symlink_loop_is_skipped_and_dangling_link_is_an_error_row(
    zero_shot: Detector, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    _image(folder / "sub" / "good.png", 5)
    (folder / "loop.png").symlink_to("loop.png")
    (folder / "sub" / "dangling.png").symlink_to(tmp_path / "elsewhere" / "gone.png")
    (folder / "sub" / "back").symlink_to(folder, target_is_directory=True)  # a folder loop
    out = tmp_path / "out"
    run = predict_folder(zero_shot, [folder], out, grid=0)
    assert (run.total, run.predicted, len(run.errors)) == (3, 1, 2)
    rows = {r["key"]: r for r in read_rows(out)}
    assert set(rows) == {"loop", "sub/dangling", "sub/good"}  # keys stay below 'in'
    assert rows["sub/good"]["status"] == "ok"
    for key in ("loop", "sub/dangling"):
        assert rows[key]["status"] == "error" and "broken symbolic link" in rows[key]["error"]
    assert rows["sub/dangling"]["image"] == str(folder / "sub" / "dangling.png")
    with pytest.warns(UserWarning, match="Skipped 2 broken symbolic link"):
        prediction = zero_shot.predict(folder)
    assert len(prediction) == 1


# -- 8: output paths are checked before any work -----------------------------------------


def test_output_paths_are_checked_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import anomalign.methods.registry as registry

    def no_loading(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the detector was loaded before --out was checked")

    monkeypatch.setattr(registry, "load_bundle", no_loading)
    images = tmp_path / "in"
    _image(images / "a.png", 0)
    a_file = tmp_path / "file.txt"
    a_file.write_text("x", encoding="utf-8")
    for out, needle in ((a_file, "is a file, not a folder"), (a_file / "sub", "is a file")):
        assert main(["predict", "x.anomalign", str(images), "--out", str(out)]) == 2
        error = capsys.readouterr().err.strip()
        assert needle in error and len(error.splitlines()) == 1

    import anomalign.methods.finegrainedad.detector as fgad

    monkeypatch.setattr(fgad.FineGrainedAD, "_fit", no_loading)
    fit = ["fit", "--method", "finegrainedad", "--backbone", "anomalign-tiny:random",
           "--normal", str(images), "--category", "bottle"]  # fmt: skip
    assert main([*fit, "--out", str(tmp_path)]) == 2
    assert "is a folder; expected a file name" in capsys.readouterr().err
    assert main([*fit, "--out", str(a_file / "det.anomalign")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_output_folder_is_permission_denied(tmp_path: Path) -> None:
    from anomalign.outdir import check_output_dir

    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(DataError, match="permission denied"):
            check_output_dir(locked / "out")
    finally:
        locked.chmod(0o755)


# -- 11: smaller ones --------------------------------------------------------------------


def test_outputs_follow_the_umask_and_stale_temporaries_are_removed(
    zero_shot: Detector, tmp_path: Path
) -> None:
    _image(tmp_path / "in" / "a.png", 0)
    out = tmp_path / "out"
    stale = out / "maps" / ".a.png.x8k2.tmp"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half a png")
    previous = os.umask(0o027)
    try:
        predict_folder(zero_shot, [tmp_path / "in"], out)
    finally:
        os.umask(previous)
    assert not stale.exists()
    for name in ("maps/a.png", "overlays/a.png", SUMMARY_CSV, "summary.json", "grid.png"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o640, name


def test_second_predict_into_a_busy_folder_is_refused(zero_shot: Detector, tmp_path: Path) -> None:
    _image(tmp_path / "in" / "a.png", 0)
    out = tmp_path / "out"
    out.mkdir()
    with OutputLock(out, "anomalign predict"), pytest.raises(DataError, match="another run"):
        predict_folder(zero_shot, [tmp_path / "in"], out)
    assert predict_folder(zero_shot, [tmp_path / "in"], out).predicted == 1  # lock released
    assert (out / LOCK_NAME).is_file()


def test_fingerprint_hashes_state_not_timings(tiny_backbone: Backbone, train_dir: Path) -> None:
    options = {"memory_blocks": [1, 2], "seg_epochs": 1, "cls_epochs": 1}
    shots = sorted(train_dir.iterdir())[:2]
    first = fit_detector("finegrainedad", shots, "bottle", tiny_backbone, method_options=options)
    time.sleep(0.01)
    second = fit_detector("finegrainedad", shots, "bottle", tiny_backbone, method_options=options)
    assert first.fingerprint() == second.fingerprint()


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--fpr", "1.5"], "false-positive rate must be in [0, 1)"),
        (["--fpr", "nan"], "false-positive rate must be in [0, 1)"),
        (["--threshold", "nan"], "threshold must be a finite number"),
        (["--threshold", "inf"], "threshold must be a finite number"),
    ],
)
def test_threshold_options_are_checked_before_fitting(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    extra: list[str],
    needle: str,
) -> None:
    import anomalign.methods.anoclip.detector as anoclip

    def never(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("fitted before the threshold options were checked")

    monkeypatch.setattr(anoclip.AnoCLIP, "_fit", never)
    images = tmp_path / "in"
    _image(images / "a.png", 0)
    bundle = str(tmp_path / "d.anomalign")
    argv = ["fit", "--method", "anoclip", "--backbone", "anomalign-tiny:random", "--normal",
            str(images), "--val-normal", str(images), "--out", bundle]  # fmt: skip
    assert main([*argv, *extra]) == 2
    assert needle in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--alpha", "7"], "--alpha (heatmap opacity) must be in [0, 1]"),
        (["--alpha", "nan"], "--alpha (heatmap opacity) must be in [0, 1]"),
        (["--grid", "-3"], "--grid must be a whole number in [0, 1000]"),
        (["--max-side", "0"], "--max-side must be a whole number"),
        (["--batch-size", "0"], "--batch-size must be a whole number"),
        (["--threshold", "nan"], "--threshold must be a finite number"),
    ],
)
def test_predict_option_bounds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], needle: str
) -> None:
    images = tmp_path / "in"
    _image(images / "a.png", 0)
    argv = ["predict", "missing.anomalign", str(images), "--out", str(tmp_path / "o"), *extra]
    assert main(argv) == 2  # refused before the (missing) bundle is even opened
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_unreadable_folder_says_permission_denied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import anomalign.data.inputs as inputs

    folder = tmp_path / "secret"
    folder.mkdir()

    def denied_walk(top: Any, onerror: Any = None, **kwargs: Any) -> Any:
        onerror(PermissionError(13, "Permission denied", str(top)))
        return iter(())

    monkeypatch.setattr(inputs.os, "walk", denied_walk)
    with pytest.raises(DataError, match=r"Permission denied: cannot read folder '.*secret'"):
        inputs.expand_inputs([folder])


@pytest.mark.skipif(os.geteuid() == 0, reason="root may read anything")
def test_unreadable_folder_says_permission_denied_for_real(tmp_path: Path) -> None:
    from anomalign.data.inputs import expand_inputs

    folder = tmp_path / "secret"
    _image(folder / "a.png", 0)
    folder.chmod(0)
    try:
        with pytest.raises(DataError, match="Permission denied"):
            expand_inputs([folder])
    finally:
        folder.chmod(0o755)


def test_bad_options_are_config_errors_in_the_api(zero_shot: Detector, tmp_path: Path) -> None:
    _image(tmp_path / "in" / "a.png", 0)
    with pytest.raises(ConfigError, match="alpha"):
        predict_folder(zero_shot, [tmp_path / "in"], tmp_path / "o", alpha=float("nan"))
    shutil.rmtree(tmp_path / "in")
