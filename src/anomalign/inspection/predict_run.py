"""Predict on a stream of images into a folder: batched, resumable, robust to bad files.

Output folder::

    summary.json     run settings: detector, threshold, calibration, map encoding, counts
    summary.jsonl    one row per image, appended (and fsynced) as each batch finishes
    summary.csv      the same rows as a table, rewritten at the end of every run
    maps/KEY.png     16-bit anomaly map (see ``map_encoding`` in summary.json), or KEY.npy
    overlays/KEY.png heatmap over the image, colour bar, score and decision
    grid.png         the highest-scoring overlays side by side

``KEY`` is the image's path below the inputs' common folder, without its suffix. Every
file is written to a temporary name and renamed. A second run into the same folder skips
the images already in ``summary.jsonl`` (resume); images that failed before are tried
again. An image that cannot be read is recorded with ``status: "error"`` and skipped.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from anomalign.data.images import IMAGE_SUFFIXES, load_mask, load_rgb
from anomalign.data.inputs import expand_inputs, output_keys
from anomalign.data.transforms import resize_map
from anomalign.errors import ConfigError, DataError
from anomalign.io import write_bytes, write_json
from anomalign.methods import Detector
from anomalign.viz import COLORMAPS, image_grid, save_png
from anomalign.viz.render import MAX_SIDE, fit_size, render_overlay

MapFormat = Literal["png16", "npy"]
MAP_FORMATS: tuple[str, ...] = ("png16", "npy")
SUMMARY_JSON = "summary.json"
SUMMARY_JSONL = "summary.jsonl"
SUMMARY_CSV = "summary.csv"
CSV_FIELDS: tuple[str, ...] = (
    "image",
    "key",
    "status",
    "score",
    "decision",
    "map",
    "overlay",
    "height",
    "width",
    "untrained_backbone",
    "error",
)


@dataclass
class PredictRun:
    """What a :func:`predict_folder` call did."""

    out_dir: Path
    total: int
    predicted: int = 0
    resumed: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def summary_csv(self) -> Path:
        return self.out_dir / SUMMARY_CSV


def read_rows(out_dir: str | Path) -> list[dict[str, Any]]:
    """The rows of ``summary.jsonl``, latest row per image, in first-seen order; a line cut
    short by a crash is ignored."""
    path = Path(out_dir) / SUMMARY_JSONL
    if not path.is_file():
        return []
    rows: dict[str, dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and "image" in row:
            rows[row["image"]] = row
    return list(rows.values())


def _append_rows(rows: list[dict[str, Any]], path: Path) -> None:
    with path.open("a+b") as stream:  # a crash may have left half a line: end it first
        if stream.tell() > 0:
            stream.seek(-1, os.SEEK_END)
            if stream.read(1) != b"\n":
                stream.write(b"\n")
    with path.open("a", encoding="utf-8") as stream:
        for row in rows:
            stream.write(json.dumps(row) + "\n")
        stream.flush()
        os.fsync(stream.fileno())


def _write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in CSV_FIELDS})
    write_bytes(path, buffer.getvalue().encode("utf-8"))


def _find_mask(masks: Path, key: str) -> Path | None:
    for stem in (f"{key}_mask", key):
        for suffix in (".png", *sorted(IMAGE_SUFFIXES - {".png"})):
            candidate = masks / f"{stem}{suffix}"
            if candidate.is_file():
                return candidate
    return None


def _settings(
    detector: Detector, map_format: str, max_side: int, fingerprint: str
) -> dict[str, Any]:
    calibration = detector.calibration
    encoding = (
        calibration.uint16_rule() + " (decode: v = map_low + uint16 / 65535 * (map_high - map_low))"
        if map_format == "png16"
        else "float32 .npy, raw map values"
    )
    return {
        "detector_fingerprint": fingerprint,
        "map_format": map_format,
        "map_encoding": encoding,
        "map_size": f"image size, long side at most {max_side} px (aspect kept)",
        "max_side": max_side,
        "decision_rule": "anomalous when score >= threshold",
    }


def _check_resumable(out_dir: Path, settings: dict[str, Any]) -> None:
    previous_path = out_dir / SUMMARY_JSON
    if not previous_path.is_file():
        return
    try:
        previous = json.loads(previous_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return
    for key in ("detector_fingerprint", "map_format", "max_side"):
        if previous.get(key) != settings[key]:
            raise DataError(
                f"'{out_dir}' holds results of another run ({key} differs: "
                f"{previous.get(key)!r} vs {settings[key]!r}). Use another output folder, or "
                "start over (--no-resume / resume=False)."
            )


def predict_folder(
    detector: Detector,
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    batch_size: int = 8,
    map_format: MapFormat = "png16",
    cmap: str = "jet",
    alpha: float = 0.5,
    colorbar: bool = True,
    masks: str | Path | None = None,
    resume: bool = True,
    max_side: int = MAX_SIDE,
    grid: int = 16,
    progress: Callable[[int, int, int], None] | None = None,
) -> PredictRun:
    """Predict every image of ``inputs`` (files and folders) into ``out_dir``.

    Args:
        detector: a loaded or freshly fitted detector.
        batch_size: images decoded and encoded together.
        map_format: "png16" (calibrated, see ``map_encoding`` in summary.json) or "npy".
        cmap, alpha, colorbar: overlay style ("jet" or the perceptual "hot").
        masks: folder of ground-truth masks, looked up as ``KEY_mask.png`` or ``KEY.png``,
            drawn as contours on the overlays.
        resume: skip images already predicted into ``out_dir``; False starts over.
        max_side: maps and overlays are at most this many pixels on the long side.
        grid: number of highest-scoring overlays in ``grid.png`` (0: none).
        progress: called as ``progress(done, total, errors)`` after each batch.
    """
    if map_format not in MAP_FORMATS:
        raise ConfigError(f"map_format must be one of {MAP_FORMATS}, got '{map_format}'.")
    if cmap not in COLORMAPS:
        raise ConfigError(f"Unknown colormap '{cmap}'; known: {', '.join(sorted(COLORMAPS))}.")
    if batch_size < 1 or max_side < 1:
        raise ConfigError("batch_size and max_side must be at least 1.")
    started = time.perf_counter()
    out_dir = Path(out_dir)
    masks_dir = None if masks is None else Path(masks)
    if masks_dir is not None and not masks_dir.is_dir():
        raise DataError(f"Mask folder '{masks_dir}' does not exist.")
    own = out_dir.resolve()  # never predict on our own outputs when --out is inside an input
    paths = [p for p in expand_inputs(inputs) if not p.resolve().is_relative_to(own)]
    if not paths:
        raise DataError(f"The inputs hold no images outside the output folder '{out_dir}'.")
    keys = output_keys(paths)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = _settings(detector, map_format, max_side, detector.fingerprint())
    jsonl = out_dir / SUMMARY_JSONL
    if resume:
        _check_resumable(out_dir, settings)
    else:
        jsonl.unlink(missing_ok=True)
    done = {row["image"] for row in read_rows(out_dir) if row.get("status") == "ok"}
    summary = {
        **settings,
        "detector": detector.describe(),
        "inputs": [str(i) for i in inputs],
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_json(out_dir / SUMMARY_JSON, summary)
    run = PredictRun(out_dir, total=len(paths))
    todo = []
    for path, key in zip(paths, keys, strict=True):
        if str(path.resolve()) in done:
            run.resumed += 1
        else:
            todo.append((path, key))
    untrained = detector.untrained_backbone
    threshold = detector.threshold
    for start in range(0, len(todo), batch_size):
        rows = _predict_batch(
            detector,
            todo[start : start + batch_size],
            out_dir,
            map_format,
            dict(cmap=cmap, alpha=alpha, colorbar=colorbar),
            masks_dir,
            max_side,
            batch_size,
        )
        for row in rows:
            row["untrained_backbone"] = untrained
            if row["status"] == "ok":
                run.predicted += 1
                if threshold is not None:
                    row["decision"] = "anomalous" if row["score"] >= threshold.value else "normal"
            else:
                run.errors.append((row["image"], row["error"]))
        _append_rows(rows, jsonl)
        if progress is not None:
            progress(run.resumed + min(start + batch_size, len(todo)), run.total, len(run.errors))
    rows = read_rows(out_dir)
    _write_csv(rows, out_dir / SUMMARY_CSV)
    if grid:
        _write_grid(rows, out_dir, grid)
    run.seconds = time.perf_counter() - started
    ok = [r for r in rows if r.get("status") == "ok"]
    summary.update(
        finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        images=len(rows),
        ok=len(ok),
        errors=len(rows) - len(ok),
        anomalous=sum(r.get("decision") == "anomalous" for r in ok) if threshold else None,
        seconds_this_run=round(run.seconds, 3),
    )
    write_json(out_dir / SUMMARY_JSON, summary)
    return run


def _error_row(path: Path, key: str, error: BaseException) -> dict[str, Any]:
    message = str(error) or type(error).__name__
    return {
        "image": str(path.resolve()),
        "key": key,
        "status": "error",
        "score": None,
        "decision": None,
        "error": f"{type(error).__name__}: {message}",
    }


def _predict_batch(
    detector: Detector,
    batch: list[tuple[Path, str]],
    out_dir: Path,
    map_format: str,
    style: dict[str, Any],
    masks_dir: Path | None,
    max_side: int,
    batch_size: int,
) -> list[dict[str, Any]]:
    rows: dict[int, dict[str, Any]] = {}
    loaded: list[tuple[int, np.ndarray]] = []
    for index, (path, key) in enumerate(batch):
        try:
            loaded.append((index, load_rgb(path)))
        except Exception as error:  # any unreadable file is reported, never fatal
            rows[index] = _error_row(path, key, error)
    try:
        prediction = detector.predict([rgb for _, rgb in loaded], batch_size=batch_size)
        scores, maps = prediction.scores, prediction.maps
        results = [(i, rgb, s, m) for (i, rgb), s, m in zip(loaded, scores, maps, strict=True)]
    except Exception:
        results = []  # find the image that breaks the batch: one at a time
        for index, rgb in loaded:
            try:
                single = detector.predict([rgb], batch_size=1)
                results.append((index, rgb, single.scores[0], single.maps[0]))
            except Exception as error:
                rows[index] = _error_row(batch[index][0], batch[index][1], error)
    for index, rgb, score, raw in results:
        path, key = batch[index]
        try:
            rows[index] = _write_outputs(
                detector,
                path,
                key,
                rgb,
                float(score),
                raw,
                out_dir,
                map_format,
                style,
                masks_dir,
                max_side,
            )
        except OSError as error:
            rows[index] = _error_row(path, key, error)
    return [rows[i] for i in sorted(rows)]


def _write_outputs(
    detector: Detector,
    path: Path,
    key: str,
    rgb: np.ndarray,
    score: float,
    raw: np.ndarray,
    out_dir: Path,
    map_format: str,
    style: dict[str, Any],
    masks_dir: Path | None,
    max_side: int,
) -> dict[str, Any]:
    calibration = detector.calibration
    height, width = rgb.shape[:2]
    amap = np.asarray(resize_map(raw, fit_size(height, width, max_side)), np.float32)
    map_rel = f"maps/{key}.png" if map_format == "png16" else f"maps/{key}.npy"
    if map_format == "png16":
        save_png(calibration.to_uint16(amap), out_dir / map_rel)
    else:
        buffer = io.BytesIO()
        np.save(buffer, amap)
        write_bytes(out_dir / map_rel, buffer.getvalue())
    row: dict[str, Any] = {"image": str(path.resolve()), "key": key, "status": "ok"}
    mask = None
    if masks_dir is not None:
        mask_path = _find_mask(masks_dir, key)
        if mask_path is not None:
            try:
                mask = load_mask(mask_path)
                row["mask"] = str(mask_path)
            except Exception as error:
                row["mask_error"] = f"{type(error).__name__}: {error}"
    threshold = detector.threshold
    caption = f"score {score:.4g}"
    if threshold is not None:
        verdict = "ANOMALOUS" if score >= threshold.value else "normal"
        caption += f"  {verdict} (t={threshold.value:.4g})"
    overlay = render_overlay(
        rgb,
        amap,
        calibration,
        mask=mask,
        caption=caption,
        untrained=detector.untrained_backbone,
        max_side=max_side,
        **style,
    )
    overlay_rel = f"overlays/{key}.png"
    save_png(overlay, out_dir / overlay_rel)
    row.update(
        score=score,
        decision=None,
        map=map_rel,
        overlay=overlay_rel,
        height=height,
        width=width,
        map_max=float(amap.max()),
        error=None,
    )
    return row


def _write_grid(rows: list[dict[str, Any]], out_dir: Path, count: int) -> None:
    from anomalign.data.images import ImageReadError

    ranked = sorted(
        (r for r in rows if r.get("status") == "ok"), key=lambda r: r["score"], reverse=True
    )
    panels, titles = [], []
    for row in ranked[:count]:
        try:
            panels.append(load_rgb(out_dir / row["overlay"]))
        except ImageReadError:
            continue
        titles.append(row["key"][-40:])
    if panels:
        save_png(image_grid(panels, titles, columns=min(4, len(panels))), out_dir / "grid.png")
