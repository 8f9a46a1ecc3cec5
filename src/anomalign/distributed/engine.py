"""Batch prediction on Ray Data: the same rows as the local engine, on one machine or many.

The job, for ``predict_dataset(detector, inputs, out)``::

    driver     list the inputs (local paths or pyarrow.fs URIs), give each its detector
               (one bundle, or a --detector-map), load each bundle once to check it and
               take its fingerprint, read what OUT already holds (resume), and cut the
               inputs into *batches*: runs of ``batch_size`` images of one detector, in the
               local engine's order
    CPU tasks  read each batch's files, hash them (SHA-256), skip those OUT already holds
               with that hash and detector fingerprint, decode the rest to RGB (with CPU
               actors that ask for the same resources Ray fuses this into the actors)
    actors     ``map_batches`` with :class:`BatchPredictor`: loads a bundle once and keeps
               one detector at a time (batches arrive grouped by detector), predicts a
               batch in one forward pass as the local engine does, and builds the rows
    Parquet    one row per image (:mod:`anomalign.distributed.schema`), appended as part
               files ``part-RUN-*.parquet`` beside ``_anomalign.json`` (settings, detectors,
               schema, runs)

A batch travels whole from the driver to one actor, so every image is predicted together
with exactly the images the local engine predicts it with: scores and maps are equal bit
for bit (a forward pass over other neighbours can differ in the last float bit).

``ANOMALIGN_RAY_PROGRESS=0`` turns Ray Data's progress output off (tests, benchmarks).
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from anomalign import __version__
from anomalign.calibration import CONFIDENCE_RULE
from anomalign.data.images import load_rgb_bytes_sized, path_text
from anomalign.data.transforms import resize_map
from anomalign.distributed import sources
from anomalign.distributed.schema import (
    SCHEMA,
    SCHEMA_VERSION,
    now,
    png16_bytes,
    rows_to_table,
    schema_doc,
)
from anomalign.errors import ConfigError, DataError
from anomalign.viz.render import MAX_SIDE, fit_size

MANIFEST = "_anomalign.json"
#: The columns read from earlier runs to resume.
RESUME_COLUMNS = ["input", "content_hash", "detector_fingerprint", "status", "predicted_at"]
#: Intermediate table from the read tasks to the predictor actors: one row per batch.
READ_SCHEMA = pa.schema(
    [
        ("batch", pa.int64()),
        ("detector", pa.string()),
        ("fingerprint", pa.string()),
        ("inputs", pa.list_(pa.string())),
        ("hashes", pa.list_(pa.string())),
        ("errors", pa.list_(pa.string())),
        ("heights", pa.list_(pa.int32())),
        ("widths", pa.list_(pa.int32())),
        ("decoded", pa.list_(pa.list_(pa.int32()))),
        ("pixels", pa.large_list(pa.large_binary())),
    ]
)
NO_DETECTOR = (
    "DataError: no detector for this input: it matches no row of the detector map and no "
    "default DETECTOR was given"
)


@dataclass
class DatasetRun:
    """What a :func:`predict_dataset` call did."""

    out: str
    total: int
    predicted: int = 0
    resumed: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    files: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DetectorInfo:
    """What the driver learnt about one bundle (sent to every actor)."""

    bundle: str
    fingerprint: str
    threshold: float | None
    untrained_backbone: bool
    describe: dict[str, Any]


# -- reading and decoding (CPU tasks) -----------------------------------------------------


def _describe_error(error: BaseException) -> str:
    message = " ".join(path_text(str(error)).split()) or type(error).__name__
    return f"{type(error).__name__}: {message}"


def read_batches(table: pa.Table, max_side: int = MAX_SIDE) -> pa.Table:
    """Ray task: read, hash and decode the images of each batch row as the local engine
    does (large files shrunk at decode time to about ``max_side``); errors are kept as
    per-image messages, finished images are dropped."""
    out: dict[str, list[Any]] = {name: [] for name in READ_SCHEMA.names}
    for batch in table.to_pylist():
        lists: dict[str, list[Any]] = {k: [] for k in ("inputs", "hashes", "errors")}
        lists.update(heights=[], widths=[], decoded=[], pixels=[])
        entries = zip(batch["inputs"], batch["sources"], batch["done"], strict=True)
        for identity, source, done in entries:
            digest, error, rgb, size = None, None, None, (0, 0)
            try:
                data = sources.read_bytes(source)
                digest = sources.content_hash(data)
                if done and digest == done:
                    continue  # resumed: OUT holds this content with this detector
                if batch["detector"] is not None:
                    rgb, size = load_rgb_bytes_sized(data, identity, max_side)
            except Exception as caught:  # any unreadable file is reported, never fatal
                error = _describe_error(caught)
            lists["inputs"].append(identity)
            lists["hashes"].append(digest)
            lists["errors"].append(error)
            lists["heights"].append(size[0])
            lists["widths"].append(size[1])
            lists["decoded"].append([0, 0] if rgb is None else list(rgb.shape[:2]))
            lists["pixels"].append(b"" if rgb is None else rgb.tobytes())
        out["batch"].append(batch["batch"])
        out["detector"].append(batch["detector"])
        out["fingerprint"].append(batch["fingerprint"])
        for name, values in lists.items():
            out[name].append(values)
    return pa.Table.from_pydict(out, schema=READ_SCHEMA)


# -- prediction (actors) ------------------------------------------------------------------


class BatchPredictor:
    """Ray actor: holds one detector at a time and turns batches of images into rows.

    Args:
        detectors: ``{bundle: DetectorInfo}`` from the driver (fingerprint to check,
            threshold override).
        device: "cpu" or "cuda" (GPU actors).
        threads: torch threads per actor (None: leave as Ray set them).
        batch_size, maps, max_side: as in :func:`predict_dataset`.
        threshold: a threshold that overrides every bundle's (None: the bundle's).
        cache: folder for local copies of bundles given as URIs.
    """

    def __init__(
        self,
        detectors: dict[str, DetectorInfo],
        device: str,
        threads: int | None,
        batch_size: int,
        maps: bool,
        max_side: int,
        threshold: float | None,
        cache: str,
    ) -> None:
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.infos = detectors
        self.device, self.batch_size, self.maps, self.max_side = device, batch_size, maps, max_side
        self.threshold_override, self.cache = threshold, cache
        self.bundle: str | None = None
        self.detector: Any = None
        self.load_error: str | None = None

    def _use(self, bundle: str) -> None:
        """Make ``bundle`` the detector held (the previous one is let go first)."""
        if bundle == self.bundle:
            return
        self.detector, self.bundle, self.load_error = None, bundle, None
        gc.collect()
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()
        from anomalign.methods import load_detector

        try:
            detector = load_detector(sources.local_copy(bundle, self.cache), device=self.device)
            if self.threshold_override is not None:
                detector.set_threshold(self.threshold_override, "given to anomalign predict")
            if detector.fingerprint() != self.infos[bundle].fingerprint:
                raise DataError(
                    f"Detector bundle '{bundle}' changed since the job started (fingerprint "
                    "differs); run the job again."
                )
            self.detector = detector
        except Exception as error:
            self.load_error = _describe_error(error)

    def __call__(self, table: pa.Table) -> pa.Table:
        rows: list[dict[str, Any]] = []
        for batch in table.to_pylist():
            rows += self.predict_batch(batch)
        return rows_to_table(rows)

    def predict_batch(self, batch: dict[str, Any]) -> list[dict[str, Any]]:
        """Rows for one batch (as :func:`read_batches` made it), in input order."""
        bundle = batch["detector"]
        info = self.infos.get(bundle) if bundle is not None else None
        base = {
            "detector": bundle or "",
            "detector_fingerprint": batch["fingerprint"] or "",
            "untrained_backbone": bool(info and info.untrained_backbone),
            "anomalign_version": __version__,
        }
        inputs = batch["inputs"]
        rows: dict[int, dict[str, Any]] = {}
        failure = NO_DETECTOR if bundle is None else None
        if failure is None:
            self._use(bundle)
            failure = self.load_error
        images: list[tuple[int, np.ndarray]] = []
        for index, identity in enumerate(inputs):
            error = batch["errors"][index] or failure
            if error is not None:
                rows[index] = self._error(base, identity, batch["hashes"][index], error)
                continue
            shape = (*batch["decoded"][index], 3)
            pixels = np.frombuffer(batch["pixels"][index], np.uint8).reshape(shape).copy()
            images.append((index, pixels))
        results, failures = self._predict(images)
        for index, message in failures.items():
            rows[index] = self._error(base, inputs[index], batch["hashes"][index], message)
        for index, _rgb, score, raw in results:
            identity = inputs[index]
            size = (batch["heights"][index], batch["widths"][index])
            try:
                rows[index] = self._row(base, identity, batch["hashes"][index], size, score, raw)
            except Exception as error:  # non-finite score or map, PNG encoding
                rows[index] = self._error(base, identity, batch["hashes"][index], error)
        stamp = now()
        ordered = [rows[i] for i in sorted(rows)]
        for row in ordered:
            row["predicted_at"] = stamp
        return ordered

    def _predict(
        self, images: list[tuple[int, np.ndarray]]
    ) -> tuple[list[tuple[int, np.ndarray, Any, np.ndarray]], dict[int, str]]:
        """The local engine's rule: the batch in one call; if it fails, one at a time to
        find the image that breaks it (that one becomes an error row)."""
        if not images:
            return [], {}
        detector = self.detector
        try:
            prediction = detector.predict([rgb for _, rgb in images], batch_size=self.batch_size)
            scores, maps = prediction.scores, prediction.maps
            return [(i, rgb, s, m) for (i, rgb), s, m in zip(images, scores, maps, strict=True)], {}
        except Exception:
            results, failures = [], {}
            for index, rgb in images:
                try:
                    single = detector.predict([rgb], batch_size=1)
                    results.append((index, rgb, single.scores[0], single.maps[0]))
                except Exception as error:
                    failures[index] = _describe_error(error)
            return results, failures

    def _error(
        self, base: dict[str, Any], identity: str, digest: str | None, error: Any
    ) -> dict[str, Any]:
        message = error if isinstance(error, str) else _describe_error(error)
        row = {**base, "input": identity, "content_hash": digest, "status": "error"}
        return {**row, "error": message}

    def _row(
        self,
        base: dict[str, Any],
        identity: str,
        digest: str | None,
        size: tuple[int, int],
        score: Any,
        raw: np.ndarray,
    ) -> dict[str, Any]:
        """The row of a predicted image of displayed ``size`` (the local engine's map
        size and encoding)."""
        detector = self.detector
        calibration = detector.calibration
        score = float(score)
        if not np.isfinite(score):
            raise DataError(f"the detector gave a non-finite score ({score}) for this image")
        height, width = size
        amap = np.asarray(resize_map(raw, fit_size(height, width, self.max_side)), np.float32)
        if not np.all(np.isfinite(amap)):
            raise DataError("the detector's anomaly map for this image holds nan or inf values")
        threshold = detector.threshold
        decision = None
        if threshold is not None:
            decision = "anomalous" if score >= threshold.value else "normal"
        return {
            **base,
            "input": identity,
            "content_hash": digest,
            "status": "ok",
            "error": None,
            "score": score,
            "decision": decision,
            "threshold": None if threshold is None else threshold.value,
            "confidence": calibration.confidence(
                score, None if threshold is None else threshold.value
            ),
            "height": height,
            "width": width,
            "map_png": png16_bytes(calibration.to_uint16(amap)) if self.maps else None,
            "map_low": calibration.map_low,
            "map_high": calibration.map_high,
        }


# -- the driver ---------------------------------------------------------------------------


class _Output:
    """The output folder (local or a pyarrow.fs URI): manifest, part files, resume state."""

    def __init__(self, out: str | Path, create: bool = True) -> None:
        from pyarrow import fs

        self.identity = sources.normalize(out)
        if sources.is_uri(self.identity):
            self.fs, self.root, *_ = sources.split_uri(self.identity.rstrip("/"))
            self.local = False
        else:
            self.fs, self.root, self.local = fs.LocalFileSystem(), self.identity, True
        if create:
            self.fs.create_dir(self.root, recursive=True)
        elif self.fs.get_file_info(self.root).type != fs.FileType.Directory:
            raise DataError(f"'{self.identity}' is not a prediction folder (it does not exist).")

    def path(self, name: str) -> str:
        return f"{self.root.rstrip('/')}/{name}"

    def read_manifest(self) -> dict[str, Any] | None:
        from pyarrow import fs

        if self.fs.get_file_info(self.path(MANIFEST)).type != fs.FileType.File:
            return None
        with self.fs.open_input_stream(self.path(MANIFEST)) as stream:
            try:
                return json.loads(stream.read().decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                return None

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        from anomalign.io import dumps_json, write_text

        text = dumps_json(manifest) + "\n"
        if self.local:
            write_text(self.path(MANIFEST), text)  # atomic
        else:
            with self.fs.open_output_stream(self.path(MANIFEST)) as stream:
                stream.write(text.encode("utf-8"))

    def part_files(self, run_id: str = "") -> list[str]:
        from pyarrow import fs

        prefix = f"part-{run_id}"
        return sorted(
            info.path
            for info in self.fs.get_file_info(fs.FileSelector(self.root))
            if info.type == fs.FileType.File
            and info.base_name.startswith(prefix)
            and info.base_name.endswith(".parquet")
        )

    def read_parts(self, files: list[str], columns: list[str]) -> pa.Table:
        """The rows of ``files``; a part file cut short by a crash is moved to ``_broken/``
        (its images are predicted again)."""
        import pyarrow.parquet as pq

        tables = []
        for path in files:
            try:
                tables.append(pq.read_table(path, columns=columns, filesystem=self.fs))
            except (OSError, pa.ArrowInvalid):
                broken = self.path(f"_broken/{Path(path).name}")
                self.fs.create_dir(self.path("_broken"), recursive=True)
                self.fs.move(path, broken)
        if not tables:
            return pa.schema([SCHEMA.field(name) for name in columns]).empty_table()
        schema = pa.schema([SCHEMA.field(name) for name in columns])
        return pa.concat_tables([table.cast(schema) for table in tables])

    def remove_parts(self) -> None:
        for path in self.part_files():
            self.fs.delete_file(path)

    def finished(self) -> dict[tuple[str, str], str]:
        """``(input, detector fingerprint) -> content hash`` of the latest ok row of each."""
        import pyarrow.compute as pc

        table = self.read_parts(self.part_files(), RESUME_COLUMNS)
        table = table.filter(pc.equal(table["status"], "ok"))
        table = table.sort_by("predicted_at")
        keys = zip(
            table["input"].to_pylist(),
            table["detector_fingerprint"].to_pylist(),
            table["content_hash"].to_pylist(),
            strict=True,
        )
        return {(identity, fp): digest for identity, fp, digest in keys}


def _inspect_detectors(
    bundles: Sequence[str], threshold: float | None, cache: str
) -> dict[str, DetectorInfo]:
    """Load each bundle once on the driver (sharing a backbone between bundles of one
    backbone) to fail early on a bad bundle and to take its fingerprint."""
    import warnings

    from anomalign.backbones import UntrainedBackboneWarning
    from anomalign.bundles import load_bundle
    from anomalign.methods import load_detector

    backbones: dict[str, Any] = {}
    infos: dict[str, DetectorInfo] = {}
    for bundle in bundles:
        local = sources.local_copy(bundle, cache)
        if not local.is_file():
            raise ConfigError(f"Detector bundle '{bundle}' does not exist.")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UntrainedBackboneWarning)
            spec = str(load_bundle(local).backbone)
            detector = load_detector(local, backbone=backbones.get(spec))
        backbones.setdefault(spec, getattr(detector, "backbone", None))
        if threshold is not None:
            detector.set_threshold(threshold, "given to anomalign predict")
        infos[bundle] = DetectorInfo(
            bundle=bundle,
            fingerprint=detector.fingerprint(),
            threshold=None if detector.threshold is None else detector.threshold.value,
            untrained_backbone=detector.untrained_backbone,
            describe=detector.describe(),
        )
    return infos


def plan_batches(
    inputs: Sequence[sources.Input],
    assigned: Sequence[str | None],
    infos: dict[str, DetectorInfo],
    finished: dict[tuple[str, str], str],
    batch_size: int,
) -> pa.Table:
    """The batch table the job starts from: runs of ``batch_size`` inputs of one detector,
    detectors in order of first use, inputs in listed order (the local engine's batches)."""
    groups: dict[str | None, list[sources.Input]] = {}
    for entry, bundle in zip(inputs, assigned, strict=True):
        groups.setdefault(bundle, []).append(entry)
    rows: dict[str, list[Any]] = {k: [] for k in ("batch", "detector", "fingerprint")}
    rows.update(inputs=[], sources=[], done=[])
    for bundle, members in groups.items():
        fingerprint = None if bundle is None else infos[bundle].fingerprint
        for start in range(0, len(members), batch_size):
            chunk = members[start : start + batch_size]
            rows["batch"].append(len(rows["batch"]))
            rows["detector"].append(bundle)
            rows["fingerprint"].append(fingerprint)
            rows["inputs"].append([e.identity for e in chunk])
            rows["sources"].append([e.source for e in chunk])
            rows["done"].append([finished.get((e.identity, fingerprint or ""), "") for e in chunk])
    schema = pa.schema(
        [
            ("batch", pa.int64()),
            ("detector", pa.string()),
            ("fingerprint", pa.string()),
            ("inputs", pa.list_(pa.string())),
            ("sources", pa.list_(pa.binary())),
            ("done", pa.list_(pa.string())),
        ]
    )
    return pa.Table.from_pydict(rows, schema=schema)


def _connect(address: str | None) -> bool:
    """Join the Ray cluster at ``address`` or start a local instance; True when we started
    (and so must stop) it. Usage statistics are off unless the user turned them on."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(include_dashboard=False, log_to_driver=False)
    return True


def _part_names(run_id: str) -> Any:
    from ray.data.datasource import FilenameProvider

    class PartNames(FilenameProvider):
        def get_filename_for_task(self, write_uuid: str, task_index: int) -> str:
            return f"part-{run_id}-{write_uuid}_{task_index:06d}"

    return PartNames(file_format="parquet")


def _settings(maps: bool, max_side: int) -> dict[str, Any]:
    return {
        "maps": maps,
        "max_side": max_side,
        "map_encoding": "16-bit greyscale PNG: uint16 = round(clip((v - map_low) / (map_high "
        "- map_low), 0, 1) * 65535); decode: v = map_low + uint16 / 65535 * (map_high - "
        "map_low)",
        "map_size": f"image size, long side at most {max_side} px (aspect kept)",
        "decision_rule": "anomalous when score >= threshold",
        "confidence_rule": CONFIDENCE_RULE,
    }


def _check_resumable(manifest: dict[str, Any] | None, settings: dict[str, Any], out: str):
    if manifest is None:
        return
    previous = {"schema_version": manifest.get("schema_version"), **manifest.get("settings", {})}
    current = {"schema_version": SCHEMA_VERSION, **settings}
    for key in ("schema_version", "maps", "max_side"):
        if previous.get(key) != current[key]:
            raise DataError(
                f"'{out}' holds results written with other settings ({key} differs: "
                f"{previous.get(key)!r} vs {current[key]!r}). Use another output folder, or "
                "start over (--no-resume / resume=False)."
            )


def predict_dataset(
    detector_path: str | Path | None,
    inputs: Sequence[str | Path],
    out: str | Path,
    *,
    detector_map: str | Path | None = None,
    address: str | None = None,
    workers: int = 1,
    gpus_per_worker: float = 0.0,
    cpus_per_worker: float | None = None,
    threads_per_worker: int | None = None,
    batch_size: int = 8,
    maps: bool = True,
    max_side: int = MAX_SIDE,
    threshold: float | None = None,
    resume: bool = True,
    rows_per_file: int = 1000,
) -> DatasetRun:
    """Predict every image of ``inputs`` on Ray Data into the Parquet folder ``out``.

    Args:
        detector_path: the bundle (path or URI) for every input, or for the inputs no
            row of ``detector_map`` matches (None: those become error rows).
        inputs: image files, folders (recursive) and pyarrow.fs URIs.
        out: output folder (local, on a filesystem every node shares, or a URI).
        detector_map: a ``pattern,detector`` CSV (see :mod:`anomalign.distributed.sources`).
        address: the Ray cluster ("auto", "ray://HOST:PORT"); None joins the Ray this
            process already started, or starts a local one.
        workers: predictor actors (each loads the detector once).
        gpus_per_worker: GPUs per actor (0: CPU actors; 0.5: two actors share a GPU).
        cpus_per_worker: logical CPUs per actor (None: 1, or less on a small machine so
            one CPU stays free for reading).
        threads_per_worker: torch threads per CPU actor (None: this machine's cores
            divided among the workers when Ray runs locally, else Ray's setting).
        batch_size: images per forward pass (and per batch of the job).
        maps: write each image's 16-bit map PNG into ``map_png``.
        max_side: long side of the maps, as the local engine's ``--max-side``.
        threshold: a decision threshold overriding every bundle's.
        resume: skip inputs ``out`` holds (same content hash and detector fingerprint);
            False deletes the part files already in ``out``.
        rows_per_file: rows gathered into one Parquet part file (at least).
    """
    if workers < 1 or batch_size < 1 or max_side < 1 or rows_per_file < 1:
        raise ConfigError("workers, batch_size, max_side and rows_per_file must be at least 1.")
    if gpus_per_worker < 0 or (cpus_per_worker is not None and cpus_per_worker <= 0):
        raise ConfigError("gpus_per_worker must be >= 0 and cpus_per_worker > 0.")
    if detector_path is None and detector_map is None:
        raise ConfigError("Give a detector bundle, a detector map, or both.")
    if isinstance(inputs, str | Path):
        inputs = [inputs]
    started = time.perf_counter()
    output = _Output(out)
    listed = sources.list_inputs(inputs, exclude=output.identity if output.local else None)
    identities = [entry.identity for entry in listed]
    rules = [] if detector_map is None else sources.read_detector_map(detector_map)
    default = None if detector_path is None else sources.normalize(detector_path)
    assigned = sources.assign_detectors(identities, rules, default)
    settings = _settings(maps, max_side)
    manifest = output.read_manifest()
    if resume:
        _check_resumable(manifest, settings, output.identity)
    else:
        output.remove_parts()
        manifest = None
    cache = tempfile.mkdtemp(prefix="anomalign-bundles-")
    bundles = list(dict.fromkeys(b for b in assigned if b is not None))
    infos = _inspect_detectors(bundles, threshold, cache)
    finished = output.finished() if resume else {}
    plan = plan_batches(listed, assigned, infos, finished, batch_size)
    run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
    manifest = manifest or {"format": "anomalign predictions (Parquet part files)", "runs": []}
    manifest.update(
        schema_version=SCHEMA_VERSION,
        settings=settings,
        columns=schema_doc(),
        detectors={
            **manifest.get("detectors", {}),
            **{
                info.fingerprint: {"bundle": info.bundle, "describe": info.describe}
                for info in infos.values()
            },
        },
    )
    record: dict[str, Any] = {
        "run_id": run_id,
        "engine": "ray",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "inputs": [str(i) for i in inputs],
        "detector_map": None if detector_map is None else str(detector_map),
        "workers": workers,
        "gpus_per_worker": gpus_per_worker,
        "batch_size": batch_size,
        "total": len(identities),
    }
    manifest["runs"].append(record)
    output.write_manifest(manifest)

    started_ray = _connect(address)
    try:
        _run(
            plan,
            infos,
            output,
            run_id,
            address=address,
            workers=workers,
            gpus_per_worker=gpus_per_worker,
            cpus_per_worker=cpus_per_worker,
            threads_per_worker=threads_per_worker,
            batch_size=batch_size,
            maps=maps,
            max_side=max_side,
            threshold=threshold,
            cache=cache,
            rows_per_file=rows_per_file,
        )
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        if started_ray:
            import ray

            ray.shutdown()
    files = output.part_files(run_id)
    written = output.read_parts(files, ["input", "status", "error"]).to_pylist()
    result = DatasetRun(output.identity, total=len(identities), files=files)
    for row in written:
        if row["status"] == "ok":
            result.predicted += 1
        else:
            result.errors.append((row["input"], row["error"]))
    result.resumed = result.total - len(written)
    result.seconds = time.perf_counter() - started
    record.update(
        finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        predicted=result.predicted,
        resumed=result.resumed,
        errors=len(result.errors),
        seconds=round(result.seconds, 3),
    )
    output.write_manifest(manifest)
    return result


def _run(
    plan: pa.Table,
    infos: dict[str, DetectorInfo],
    output: _Output,
    run_id: str,
    *,
    address: str | None,
    workers: int,
    gpus_per_worker: float,
    cpus_per_worker: float | None,
    threads_per_worker: int | None,
    batch_size: int,
    maps: bool,
    max_side: int,
    threshold: float | None,
    cache: str,
    rows_per_file: int,
) -> None:
    import ray
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = bool(os.environ.get("ANOMALIGN_RAY_PROGRESS", "1") != "0")
    if cpus_per_worker is None:
        total = float(ray.cluster_resources().get("CPU", 1.0))
        cpus_per_worker = 1.0 if gpus_per_worker else min(1.0, max(0.25, (total - 1) / workers))
    if threads_per_worker is None and not gpus_per_worker and not address:
        threads_per_worker = max(1, (os.cpu_count() or 1) // workers)
    blocks = min(plan.num_rows, 1000) or 1
    step = -(-plan.num_rows // blocks) or 1
    dataset = ray.data.from_arrow([plan.slice(i, step) for i in range(0, plan.num_rows, step)])
    # CPU tasks. With CPU predictor actors asking for the same resources, Ray fuses this
    # stage into the actors (no hop through the object store); GPU actors get the decoded
    # batches from separate CPU tasks.
    dataset = dataset.map_batches(
        read_batches, batch_size=1, batch_format="pyarrow", fn_kwargs={"max_side": max_side}
    )
    dataset = dataset.map_batches(
        BatchPredictor,
        fn_constructor_kwargs={
            "detectors": infos,
            "device": "cuda" if gpus_per_worker else "cpu",
            "threads": threads_per_worker,
            "batch_size": batch_size,
            "maps": maps,
            "max_side": max_side,
            "threshold": threshold,
            "cache": cache,
        },
        batch_size=1,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=cpus_per_worker,
        num_gpus=gpus_per_worker or None,
    )
    dataset.write_parquet(
        output.root,
        filesystem=output.fs,
        filename_provider=_part_names(run_id),
        min_rows_per_file=rows_per_file,
        schema=SCHEMA,
    )
