"""Predict on a stream of images into a folder: batched, resumable, robust to bad files.

Output folder::

    summary.json     run settings: detector, threshold, calibration, map encoding, counts
    summary.jsonl    one row per image, appended (and fsynced) as each batch finishes
    summary.csv      the same rows as a table, rewritten at the end of every run
    maps/KEY.png     16-bit anomaly map (see ``map_encoding`` in summary.json), or KEY.npy
    overlays/KEY.png heatmap over the image, colour bar, score and decision
    grid.png         the highest-scoring overlays side by side

``KEY`` is the image's path below the inputs' common folder, without its suffix; once
given to an image it stays that image's for the life of the folder (a later run with
another image of the same name gets ``KEY~2``). Names that are not UTF-8 are written with
``\\xNN`` escapes. Every file is written to a temporary name and renamed, and every JSON
file is strict (no ``NaN``). A second run into the same folder skips the images already in
``summary.jsonl`` whose content (SHA-256) is unchanged (resume); changed images and images
that failed before are predicted again. An image that cannot be read, a broken link, or
an image whose score or map is not finite is recorded with ``status: "error"``. With a
threshold, each row has a decision and its confidence (:meth:`Calibration.confidence`,
the rule of the service and of Ray's rows).

The folder is locked while a run writes it (a second concurrent run is refused), and the
temporary files of a killed run are removed by the next one.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from anomalign.calibration import CONFIDENCE_RULE
from anomalign.data.images import IMAGE_SUFFIXES, load_mask, load_rgb, load_rgb_sized, path_text
from anomalign.data.inputs import expand_inputs, output_keys, safe_resolve
from anomalign.data.transforms import resize_map
from anomalign.errors import ConfigError, DataError, NonFiniteResultError
from anomalign.io import dumps_json, write_bytes, write_json
from anomalign.methods import Detector
from anomalign.outdir import OutputLock, check_output_dir, remove_stale_temporaries
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
    "confidence",
    "map",
    "overlay",
    "height",
    "width",
    "untrained_backbone",
    "sha256",
    "error",
)
#: Largest batch, grid and map side accepted (a typo cannot exhaust memory).
MAX_BATCH = 4096
MAX_GRID = 1000
MAX_MAP_SIDE = 16384
HASH_CHUNK = 1 << 20


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
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line, parse_constant=_refuse_constant)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("image"), str):
            rows[row["image"]] = row
    return list(rows.values())


def _refuse_constant(token: str) -> Any:
    raise ValueError(f"{token} is not strict JSON")


def _repair_jsonl(path: Path) -> None:
    """Cut a last line left half-written by a killed run, so every line stays JSON."""
    if not path.is_file():
        return
    with path.open("r+b") as stream:
        size = stream.seek(0, os.SEEK_END)
        if size == 0:
            return
        stream.seek(size - 1)
        if stream.read(1) == b"\n":
            return
        keep = 0
        for position in range(size - 1, max(-1, size - (1 << 22)), -1):
            stream.seek(position)
            if stream.read(1) == b"\n":
                keep = position + 1
                break
        stream.truncate(keep)


def _append_rows(rows: list[dict[str, Any]], path: Path) -> None:
    text = "".join(dumps_json(row, indent=None) + "\n" for row in rows)
    with path.open("a", encoding="utf-8") as stream:
        stream.write(text)
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
        "confidence_rule": CONFIDENCE_RULE,
    }


def _check_resumable(out_dir: Path, settings: dict[str, Any]) -> None:
    previous_path = out_dir / SUMMARY_JSON
    if not previous_path.is_file():
        return
    try:
        previous = json.loads(previous_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return
    if not isinstance(previous, dict):
        return
    for key in ("detector_fingerprint", "map_format", "max_side"):
        if previous.get(key) != settings[key]:
            raise DataError(
                f"'{out_dir}' holds results of another run ({key} differs: "
                f"{previous.get(key)!r} vs {settings[key]!r}). Use another output folder, or "
                "start over (--no-resume / resume=False)."
            )


def check_predict_options(
    map_format: str = "png16",
    cmap: str = "jet",
    alpha: float = 0.5,
    batch_size: int = 8,
    max_side: int = MAX_SIDE,
    grid: int = 16,
) -> None:
    """Raise :class:`ConfigError` naming the first bad option of :func:`predict_folder`
    (called before the detector is loaded, so nothing is done that cannot finish)."""
    if map_format not in MAP_FORMATS:
        raise ConfigError(f"map_format must be one of {MAP_FORMATS}, got '{map_format}'.")
    if cmap not in COLORMAPS:
        raise ConfigError(f"Unknown colormap '{cmap}'; known: {', '.join(sorted(COLORMAPS))}.")
    if not (isinstance(alpha, int | float) and math.isfinite(alpha) and 0.0 <= alpha <= 1.0):
        raise ConfigError(f"--alpha (heatmap opacity) must be in [0, 1], got {alpha}.")
    for name, value, low, high in (
        ("--batch-size", batch_size, 1, MAX_BATCH),
        ("--max-side", max_side, 1, MAX_MAP_SIDE),
        ("--grid", grid, 0, MAX_GRID),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(f"{name} must be a whole number in [{low}, {high}], got {value}.")


def file_digest(path: Path) -> str | None:
    """SHA-256 of a file's bytes, or None when it cannot be read."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as stream:
            while chunk := stream.read(HASH_CHUNK):
                digest.update(chunk)
    except (OSError, RuntimeError):
        return None
    return digest.hexdigest()


def image_id(path: Path) -> str:
    """How rows name an image: its resolved path as printable text (a broken link is
    named as itself, not by the target it lacks)."""
    if path.is_symlink() and not path.exists():
        return path_text(os.path.abspath(path))
    return path_text(safe_resolve(path))


def assign_keys(ids: list[str], fresh: list[str], previous: list[dict[str, Any]]) -> list[str]:
    """Output names for images ``ids`` (``fresh``: this run's :func:`output_keys`) that
    never collide with a name another image got in this folder before: an image keeps its
    earlier name, a new one whose name is taken gets ``NAME~2``, ``NAME~3``, ..."""
    owner: dict[str, str] = {}
    earlier: dict[str, str] = {}
    for row in previous:
        if isinstance(row.get("key"), str):
            owner.setdefault(row["key"], row["image"])
            earlier.setdefault(row["image"], row["key"])
    keys = []
    for ident, key in zip(ids, fresh, strict=True):
        if ident in earlier:
            keys.append(earlier[ident])
            continue
        candidate, count = key, 1
        while owner.get(candidate, ident) != ident:
            count += 1
            candidate = f"{key}~{count}"
        owner[candidate] = ident
        keys.append(candidate)
    return keys


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
        cmap, alpha, colorbar: overlay style ("jet" or the perceptual "hot"; alpha in [0, 1]).
        masks: folder of ground-truth masks, looked up as ``KEY_mask.png`` or ``KEY.png``,
            drawn as contours on the overlays.
        resume: skip images already predicted into ``out_dir`` (same path, same content);
            False starts over.
        max_side: maps and overlays are at most this many pixels on the long side.
        grid: number of highest-scoring overlays in ``grid.png`` (0: none).
        progress: called as ``progress(done, total, errors)`` after each batch.
    """
    check_predict_options(map_format, cmap, alpha, batch_size, max_side, grid)
    started = time.perf_counter()
    out_dir = check_output_dir(out_dir)
    masks_dir = None if masks is None else Path(masks)
    if masks_dir is not None and not masks_dir.is_dir():
        raise DataError(f"Mask folder '{path_text(masks_dir)}' does not exist.")
    own = safe_resolve(out_dir)  # never predict on our own outputs when --out is an input
    paths = [p for p in expand_inputs(inputs) if not safe_resolve(p).is_relative_to(own)]
    if not paths:
        raise DataError(
            f"The inputs hold no images outside the output folder '{path_text(out_dir)}'."
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    with OutputLock(out_dir, "anomalign predict"):
        remove_stale_temporaries(out_dir)
        run = _predict_locked(
            detector,
            inputs,
            paths,
            out_dir,
            batch_size,
            map_format,
            dict(cmap=cmap, alpha=alpha, colorbar=colorbar),
            masks_dir,
            resume,
            max_side,
            grid,
            progress,
        )
    run.seconds = time.perf_counter() - started
    return run


def _predict_locked(
    detector: Detector,
    inputs: Sequence[str | Path],
    paths: list[Path],
    out_dir: Path,
    batch_size: int,
    map_format: str,
    style: dict[str, Any],
    masks_dir: Path | None,
    resume: bool,
    max_side: int,
    grid: int,
    progress: Callable[[int, int, int], None] | None,
) -> PredictRun:
    """:func:`predict_folder` once its options are checked and ``out_dir`` is locked."""
    started = time.perf_counter()
    settings = _settings(detector, map_format, max_side, detector.fingerprint())
    jsonl = out_dir / SUMMARY_JSONL
    if resume:
        _check_resumable(out_dir, settings)
        _repair_jsonl(jsonl)
    else:
        jsonl.unlink(missing_ok=True)
    previous = read_rows(out_dir)
    ids = [image_id(p) for p in paths]
    keys = assign_keys(ids, output_keys(paths), previous)
    finished = {r["image"]: r.get("sha256") for r in previous if r.get("status") == "ok"}
    summary = {
        **settings,
        "detector": detector.describe(),
        "inputs": [path_text(i) for i in inputs],
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_json(out_dir / SUMMARY_JSON, summary)
    run = PredictRun(out_dir, total=len(paths))
    todo = []
    for path, ident, key in zip(paths, ids, keys, strict=True):
        digest = file_digest(path)
        if digest is not None and finished.get(ident) == digest:
            run.resumed += 1
        else:
            todo.append(_Item(path, ident, key, digest))
    untrained = detector.untrained_backbone
    threshold, calibration = detector.threshold, detector.calibration
    for start in range(0, len(todo), batch_size):
        rows = _predict_batch(
            detector, todo[start : start + batch_size], out_dir, map_format, style,
            masks_dir, max_side, batch_size,
        )  # fmt: skip
        for row in rows:
            row["untrained_backbone"] = untrained
            if row["status"] == "ok":
                run.predicted += 1
                if threshold is not None:
                    row["decision"] = "anomalous" if row["score"] >= threshold.value else "normal"
                    row["confidence"] = calibration.confidence(row["score"], threshold.value)
            else:
                run.errors.append((row["image"], row["error"]))
        _append_rows(rows, jsonl)
        if progress is not None:
            progress(run.resumed + min(start + batch_size, len(todo)), run.total, len(run.errors))
    rows = read_rows(out_dir)
    _write_csv(rows, out_dir / SUMMARY_CSV)
    if grid:
        _write_grid(rows, out_dir, grid)
    ok = [r for r in rows if r.get("status") == "ok"]
    summary.update(
        finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        images=len(rows),
        ok=len(ok),
        errors=len(rows) - len(ok),
        anomalous=sum(r.get("decision") == "anomalous" for r in ok) if threshold else None,
        seconds_this_run=round(time.perf_counter() - started, 3),
    )
    write_json(out_dir / SUMMARY_JSON, summary)
    return run


@dataclass(frozen=True)
class _Item:
    """One image to predict: its path, row name, output name and content hash."""

    path: Path
    image: str
    key: str
    sha256: str | None


def _error_row(item: _Item, error: BaseException | str) -> dict[str, Any]:
    if isinstance(error, str):
        text = error
    else:
        message = " ".join(path_text(str(error)).split()) or type(error).__name__
        text = f"{type(error).__name__}: {message}"
    return {
        "image": item.image,
        "key": item.key,
        "status": "error",
        "score": None,
        "decision": None,
        "sha256": item.sha256,
        "error": text,
    }


NON_FINITE = "non-finite result: the score or map holds NaN or infinity (no verdict)"


def _predict_batch(
    detector: Detector,
    batch: list[_Item],
    out_dir: Path,
    map_format: str,
    style: dict[str, Any],
    masks_dir: Path | None,
    max_side: int,
    batch_size: int,
) -> list[dict[str, Any]]:
    rows: dict[int, dict[str, Any]] = {}
    loaded: list[tuple[int, np.ndarray, tuple[int, int]]] = []
    for index, item in enumerate(batch):
        try:
            rgb, size = load_rgb_sized(item.path, max_side)
            loaded.append((index, rgb, size))
        except Exception as error:  # any unreadable file is reported, never fatal
            rows[index] = _error_row(item, error)
    results = []
    try:
        if loaded:
            prediction = detector.predict([rgb for _, rgb, _ in loaded], batch_size=batch_size)
            results = list(zip(loaded, prediction.scores, prediction.maps, strict=True))
    except Exception:
        results = []  # find the image that breaks the batch: one at a time
        for entry in loaded:
            try:
                single = detector.predict([entry[1]], batch_size=1)
                results.append((entry, single.scores[0], single.maps[0]))
            except NonFiniteResultError:
                rows[entry[0]] = _error_row(batch[entry[0]], NON_FINITE)
            except Exception as error:
                rows[entry[0]] = _error_row(batch[entry[0]], error)
    for (index, rgb, size), score, raw in results:
        item = batch[index]
        if not (np.isfinite(score) and np.isfinite(raw).all()):
            rows[index] = _error_row(item, NON_FINITE)
            continue
        try:
            rows[index] = _write_outputs(
                detector, item, rgb, size, float(score), raw, out_dir, map_format, style,
                masks_dir, max_side,
            )  # fmt: skip
        except (OSError, ValueError) as error:
            rows[index] = _error_row(item, error)
    return [rows[i] for i in sorted(rows)]


def _write_outputs(
    detector: Detector,
    item: _Item,
    rgb: np.ndarray,
    size: tuple[int, int],
    score: float,
    raw: np.ndarray,
    out_dir: Path,
    map_format: str,
    style: dict[str, Any],
    masks_dir: Path | None,
    max_side: int,
) -> dict[str, Any]:
    calibration = detector.calibration
    key = item.key
    height, width = size
    amap = np.asarray(resize_map(raw, fit_size(height, width, max_side)), np.float32)
    map_rel = f"maps/{key}.png" if map_format == "png16" else f"maps/{key}.npy"
    if map_format == "png16":
        save_png(calibration.to_uint16(amap), out_dir / map_rel)
    else:
        buffer = io.BytesIO()
        np.save(buffer, amap)
        write_bytes(out_dir / map_rel, buffer.getvalue())
    row: dict[str, Any] = {"image": item.image, "key": key, "status": "ok"}
    mask = None
    if masks_dir is not None:
        mask_path = _find_mask(masks_dir, key)
        if mask_path is not None:
            try:
                mask = load_mask(mask_path)
                row["mask"] = path_text(mask_path)
            except Exception as error:
                row["mask_error"] = f"{type(error).__name__}: {path_text(str(error))}"
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
        sha256=item.sha256,
        error=None,
    )
    dumps_json(row)  # strict JSON or an error row, never a poisoned summary
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
