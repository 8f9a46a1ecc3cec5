"""Run a benchmark: every (method, shots, seed, category) unit, resumable, then the report.

Each unit fits a fresh detector (on the k reference images of its seed, or on none for a
zero-shot method), predicts every test image of its category, computes the metrics and
writes, atomically and in this order, its per-image scores, optional maps and overlay
figure, and last its result file ``units/<method>/k<shots>/<seed>/<category>.json``. That
file is the unit's commit mark: on resume a unit whose file exists with the same
configuration hash is skipped, so a run interrupted by Ctrl-C or a crash continues where it
stopped. Fresh detectors make every unit independent of the ones before it, so a resumed
run gives the same numbers as an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from anomalign import __version__, io
from anomalign.data.dataset import Dataset, load_dataset
from anomalign.data.fewshot import shot_record, shots_text, stable_order
from anomalign.data.sample import Sample
from anomalign.data.transforms import resize_map, resize_mask, short_side_size
from anomalign.errors import ConfigError, DataError
from anomalign.evaluation.config import SYNTHETIC, BenchmarkConfig, stable_hash
from anomalign.evaluation.overlays import choose_examples, write_overlay_figure
from anomalign.evaluation.progress import ProgressReporter, make_progress
from anomalign.evaluation.resources import ResourceMeter
from anomalign.evaluation.units import UNIT_SCHEMA, PlannedUnit, UnitKey, UnitRecord
from anomalign.methods import MethodSpec, create_detector, method_names, method_spec
from anomalign.outdir import OutputLock, check_output_dir, remove_stale_temporaries

CONFIG_FILE = "config.json"
SYNTHETIC_DIR = "synthetic-data"


@dataclass
class BenchmarkResult:
    """What a run did and where its report is."""

    out_dir: Path
    report_path: Path
    computed: list[UnitKey] = field(default_factory=list)
    reused: list[UnitKey] = field(default_factory=list)
    units: list[dict[str, Any]] = field(default_factory=list)


# -- planning ---------------------------------------------------------------------------


def prepare_dataset(config: BenchmarkConfig, out_dir: Path) -> Dataset:
    """Load the dataset; for "synthetic", generate it under the output folder first."""
    if config.dataset == SYNTHETIC:
        from anomalign.data.synthetic import generate_synthetic_dataset

        s = config.synthetic
        categories = config.categories or s.categories
        root = out_dir / SYNTHETIC_DIR / f"{s.layout}-{stable_hash([asdict(s), categories])}"
        # left by a killed run: our staging folder, and the generator's own (hidden) one
        for pattern in (f"{root.name}.partial-*", f".{root.name}.partial-*"):
            for partial in root.parent.glob(pattern):
                shutil.rmtree(partial, ignore_errors=True)
        if not root.exists():  # generated aside, then renamed: never half a dataset
            partial = root.with_name(f"{root.name}.partial-{os.getpid()}")
            generate_synthetic_dataset(
                partial,
                layout=s.layout,
                categories=categories,
                seed=s.seed,
                image_size=s.image_size,
                n_train=s.n_train,
                n_test_good=s.n_test_good,
                n_test_defect=s.n_test_defect,
            )
            partial.rename(root)
        return load_dataset(root, s.layout, categories)
    return load_dataset(config.root, config.dataset, config.categories)


def resolve_device(device: str) -> str:
    """The torch device to use: "auto" is "cuda" when available, else "cpu"."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise ConfigError(
            f"--device '{device}' is not a torch device (cpu, cuda, cuda:1 ...)."
        ) from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: CUDA is not available on this machine.")
    return device


def plan_units(
    config: BenchmarkConfig,
    dataset: Dataset,
    categories: Sequence[str],
    specs: dict[str, MethodSpec],
    options: dict[str, dict[str, Any]],
) -> tuple[list[PlannedUnit], list[str]]:
    """Every unit of the run in order (method, shots, seed, category), and notes on what
    was not run and why (zero-shot methods ignore shots and seeds, and so on)."""
    identity = config.dataset_identity(dataset.layout)
    notes: list[str] = []
    units: list[PlannedUnit] = []
    for method in config.methods:
        protocol = specs[method]
        settings: list[tuple[int, int | None]]
        if not protocol.uses_shots:
            settings = [(0, None)]
            ignored = ", ".join(shots_text(k) for k in config.shots if k != 0)
            if ignored:
                notes.append(
                    f"{method} uses no reference images: run once at 0 shots; shots {ignored} "
                    "skipped and seeds do not apply."
                )
            elif len(config.seeds) > 1:
                notes.append(f"{method} uses no reference images: run once; seeds do not apply.")
        else:
            if 0 in config.shots and not protocol.zero_shot:
                notes.append(f"{method} needs reference images: 0 shots skipped.")
            ks = [k for k in config.shots if k != 0 or protocol.zero_shot]
            if not ks:
                raise ConfigError(
                    f"--shots {','.join(map(str, config.shots))}: {method} needs at least one "
                    "reference image (shots >= 1)."
                )
            settings = [(k, None) if k == 0 else (k, s) for k in ks for s in config.seeds]
            settings = list(dict.fromkeys(settings))
        method_options = options[method]
        eval_size = config.eval_size_for(protocol)
        eval_aspect = config.eval_aspect_for(method_options)
        first_seed: dict[int, int | None] = {}
        for k, seed in settings:
            first_seed.setdefault(k, seed)
            for category in categories:
                files: tuple[str, ...] = ()
                if k != 0:
                    shots = dataset.shots(category, k, seed if seed is not None else 0)
                    files = tuple(shot_record(shots, dataset.root))
                key = UnitKey(method, k, seed, category)
                overlay = config.overlays > 0 and first_seed[k] == seed
                payload = {
                    "schema": UNIT_SCHEMA,
                    "data": identity,
                    "method": method,
                    "options": method_options,
                    "backbone": config.backbone,
                    "precision": config.precision,
                    "eval_size": eval_size,
                    "eval_aspect": eval_aspect,
                    "aupro": config.aupro_variant,
                    "shots": k,
                    "seed": seed,
                    "category": category,
                    "shot_files": files,
                    **({"max_test": config.max_test} if config.max_test is not None else {}),
                }
                units.append(
                    PlannedUnit(
                        key,
                        method_options,
                        eval_size,
                        eval_aspect,
                        files,
                        overlay,
                        stable_hash(payload),
                    )
                )
    return units, notes


def unit_is_done(out_dir: Path, unit: PlannedUnit, config: BenchmarkConfig) -> bool:
    """True when the unit's result exists for this configuration, with its files."""
    path = out_dir / unit.key.path("units", ".json")
    if not path.is_file():
        return False
    try:
        record = io.read_json(path)
    except (OSError, json.JSONDecodeError):
        return False
    if record.get("hash") != unit.hash:
        return False
    needed = [unit.key.path("scores", ".csv")]
    if config.save_maps:
        needed.append(unit.key.path("maps", ".npz"))
    if unit.overlay:
        needed.append(unit.key.overlay_path())
    return all((out_dir / p).is_file() for p in needed)


# -- running ----------------------------------------------------------------------------


@dataclass
class _Context:
    config: BenchmarkConfig
    out_dir: Path
    dataset: Dataset
    backbone: Any
    meter: ResourceMeter
    progress: ProgressReporter
    device_name: str


def _eval_hw(sample: Sample, size: int, aspect: str) -> tuple[int, int]:
    if aspect == "squash":
        return size, size
    height, width = sample.image_size()
    return short_side_size(height, width, size)


def _chunks(sizes: Sequence[tuple[int, int]], batch: int) -> Iterator[list[int]]:
    """Consecutive indices with the same evaluation size, at most ``batch`` at a time."""
    chunk: list[int] = []
    for index, size in enumerate(sizes):
        if chunk and (len(chunk) == batch or sizes[chunk[0]] != size):
            yield chunk
            chunk = []
        chunk.append(index)
    if chunk:
        yield chunk


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def stratified_subset(samples: Sequence[Sample], limit: int, seed: int = 0) -> list[Sample]:
    """At most ``limit`` test samples, stratified by label (each label keeps its share,
    at least one), chosen by the seeded hash order of :func:`stable_order`; in the
    original order."""
    if len(samples) <= limit:
        return list(samples)
    keep: set[int] = set()
    labels = sorted({s.label for s in samples})
    for label in labels:
        members = [i for i, s in enumerate(samples) if s.label == label]
        share = max(1, round(limit * len(members) / len(samples)))
        keys = [samples[i].image_path.as_posix() for i in members]
        keep.update(members[j] for j in stable_order(keys, seed)[:share])
    return [s for i, s in enumerate(samples) if i in keep]


def _pixel_skip_reason(samples: Sequence[Sample]) -> str | None:
    anomalous = [s for s in samples if s.label == 1]
    if not anomalous:
        return "no anomalous test images"
    missing = sum(not s.mask_paths for s in anomalous)
    if missing:
        return f"{missing} of {len(anomalous)} anomalous test images have no pixel mask"
    return None


def _run_unit(unit: PlannedUnit, index: int, ctx: _Context) -> dict[str, Any]:
    from anomalign.metrics import PixelMetricAccumulator, image_metrics

    key, config, out = unit.key, ctx.config, ctx.out_dir
    samples = list(ctx.dataset.filter(category=key.category, split="test"))
    if not samples:
        raise DataError(f"Category '{key.category}' has no test images.")
    if config.max_test is not None:
        samples = stratified_subset(samples, config.max_test)
    shots = []
    if key.shots != 0:
        shots = ctx.dataset.shots(key.category, key.shots, key.seed or 0)
        if tuple(shot_record(shots, ctx.dataset.root)) != unit.shot_files:
            raise DataError(f"The reference images of {key.label} changed while planning.")
    ctx.progress.start_unit(index, key.label, len(samples))

    detector = create_detector(key.method, backbone=ctx.backbone, **unit.options)
    with ctx.meter.phase() as fit_usage:
        detector.fit([s.image_path for s in shots], category=key.category)

    sizes = [_eval_hw(s, unit.eval_size, unit.eval_aspect) for s in samples]
    skip_pixel = _pixel_skip_reason(samples)
    accumulator = None if skip_pixel else PixelMetricAccumulator(config.aupro_variant)
    examples = set(choose_examples(samples, config.overlays) if unit.overlay else [])
    kept: dict[int, np.ndarray] = {}
    scores = np.zeros(len(samples), dtype=np.float32)
    low, high = np.inf, -np.inf
    untrained = False
    with ctx.meter.phase(time_whole=False) as predict_usage:
        for chunk in _chunks(sizes, config.batch_size):
            with ctx.meter.timed(predict_usage):
                prediction = detector.predict(
                    [samples[i].image_path for i in chunk],
                    category=key.category,
                    output_size=sizes[chunk[0]],
                    batch_size=config.batch_size,
                )
            scores[chunk] = prediction.scores
            untrained |= prediction.untrained_backbone
            maps = np.stack(
                [
                    m if m.shape == sizes[chunk[0]] else resize_map(m, sizes[chunk[0]])
                    for m in prediction.maps  # a method that ignores output_size is resized
                ]
            )
            low, high = min(low, float(maps.min())), max(high, float(maps.max()))
            if accumulator is not None:
                masks = np.stack([resize_mask(samples[i].load_mask(), sizes[i]) for i in chunk])
                accumulator.update(maps, masks)
            for j, i in enumerate(chunk):
                if config.save_maps or i in examples:
                    kept[i] = maps[j]
            ctx.progress.advance(len(chunk))

    labels = np.array([s.label for s in samples])
    image = image_metrics(labels, scores)
    pixel = accumulator.compute() if accumulator is not None else None

    files: dict[str, str | None] = {"scores": key.path("scores", ".csv").as_posix()}
    root = ctx.dataset.root
    io.write_csv(
        out / files["scores"],
        ["image", "label", "defect_type", "score"],
        (
            [shot_record([s], root)[0], s.label, s.defect_type, repr(float(scores[i]))]
            for i, s in enumerate(samples)
        ),
    )
    files["maps"] = None
    if config.save_maps:
        files["maps"] = key.path("maps", ".npz").as_posix()
        io.write_npz(out / files["maps"], {f"{i:05d}": kept[i] for i in range(len(samples))})
    files["overlay"] = None
    if examples:
        files["overlay"] = key.overlay_path().as_posix()
        order = sorted(examples)
        write_overlay_figure(
            out / files["overlay"], [samples[i] for i in order], [kept[i] for i in order], low, high
        )

    record: UnitRecord = {
        "schema": UNIT_SCHEMA,
        "hash": unit.hash,
        "method": key.method,
        "shots": key.shots,
        "seed": key.seed,
        "category": key.category,
        "options": unit.options,
        "method_info": _jsonable(detector.describe()),
        "untrained_backbone": bool(untrained or getattr(ctx.backbone, "untrained", False)),
        "shot_files": list(unit.shot_files),
        "eval": {
            "size": unit.eval_size,
            "aspect": unit.eval_aspect,
            "map_sizes": sorted({tuple(s) for s in sizes}),
        },
        "n_test": len(samples),
        "n_anomalous": int(labels.sum()),
        "metrics": {
            "image": image.to_dict(),
            "pixel": None if pixel is None else pixel.to_dict(),
        },
        "pixel_skipped": skip_pixel,
        "map_range": [low, high],
        "fit": {**fit_usage.to_dict(), "images": len(shots)},
        "inference": {
            **predict_usage.to_dict(),
            "images": len(samples),
            "batch_size": config.batch_size,
        },
        "device": str(ctx.backbone.device),
        "device_name": ctx.device_name,
        "precision": config.precision,
        "anomalign_version": __version__,
        "files": files,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    record = _jsonable(record)
    io.write_json(out / key.path("units", ".json"), record)
    return record


def _unit_summary(record: dict[str, Any]) -> str:
    metrics = record["metrics"]
    parts = []
    if metrics["image"].get("auroc") is not None:
        parts.append(f"I-AUROC {100 * metrics['image']['auroc']:.1f}")
    if metrics["pixel"] and metrics["pixel"].get("auroc") is not None:
        parts.append(f"P-AUROC {100 * metrics['pixel']['auroc']:.1f}")
    ms = 1000 * record["inference"]["seconds"] / max(1, record["inference"]["images"])
    parts.append(f"{ms:.1f} ms/image")
    return ", ".join(parts)


def _device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def run_benchmark(
    config: BenchmarkConfig,
    out_dir: str | Path,
    *,
    backbone: Any = None,
    progress: bool | ProgressReporter | None = None,
    on_unit_done: Callable[[UnitKey, dict[str, Any]], None] | None = None,
    command: Sequence[str] | None = None,
) -> BenchmarkResult:
    """Run (or resume) the benchmark described by ``config`` into ``out_dir``.

    Args:
        config: what to run.
        out_dir: output folder; an existing one is resumed (finished units are reused).
            It is locked for the run (a second run into it is refused) and temporary
            files left by a killed run are removed first.
        backbone: an already loaded :class:`~anomalign.backbones.Backbone` whose spec
            matches ``config.backbone`` (default: load it).
        progress: None (bars in a terminal, lines in logs), True, False, or a reporter.
        on_unit_done: called after each computed unit with its key and record.
        command: the command line, recorded in ``config.json``.

    Returns:
        The keys computed and reused, the unit records and the report path.
    """
    from anomalign.backbones import parse_backbone_spec

    config.validate()
    known = method_names()
    unknown = [m for m in config.methods if m.lower() not in known]
    if unknown:
        raise ConfigError(
            f"--method {', '.join(unknown)}: not registered; known methods: {', '.join(known)}."
        )
    specs = {m: method_spec(m) for m in config.methods}
    for spec in specs.values():  # option names and values, before any work
        config.options_for(spec, layout="")
    if backbone is not None and parse_backbone_spec(config.backbone) != backbone.spec:
        raise ConfigError(
            f"--backbone '{config.backbone}' differs from the given backbone '{backbone.spec}'."
        )
    device = str(backbone.device) if backbone is not None else resolve_device(config.device)
    out = check_output_dir(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with OutputLock(out, "anomalign benchmark"):
        remove_stale_temporaries(out)
        return _run_locked(config, out, device, specs, backbone, progress, on_unit_done, command)


def _run_locked(
    config: BenchmarkConfig,
    out: Path,
    device: str,
    specs: dict[str, MethodSpec],
    backbone: Any,
    progress: bool | ProgressReporter | None,
    on_unit_done: Callable[[UnitKey, dict[str, Any]], None] | None,
    command: Sequence[str] | None,
) -> BenchmarkResult:
    """:func:`run_benchmark` once the options are checked and ``out`` is locked."""
    import torch

    from anomalign.backbones import load_backbone
    from anomalign.evaluation.report import write_report

    dataset = prepare_dataset(config, out)
    categories = config.categories or tuple(dataset.categories)
    for category in categories:
        dataset.by_category(category)  # raises DataError naming the known categories
    options = {m: config.options_for(specs[m], dataset.layout) for m in config.methods}
    if backbone is None:
        backbone = load_backbone(config.backbone, device=device, precision=config.precision)

    plan, notes = plan_units(config, dataset, categories, specs, options)

    shot_files: dict[str, dict[str, dict[str, list[str]]]] = {}
    for unit in plan:
        if unit.key.shots != 0:
            per_k = shot_files.setdefault(unit.key.category, {}).setdefault(str(unit.key.shots), {})
            per_k[str(unit.key.seed)] = list(unit.shot_files)
    run_record = {
        "anomalign_version": __version__,
        "command": list(command) if command is not None else None,
        "written": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": config.to_dict(),
        "dataset": {
            "name": SYNTHETIC if config.dataset == SYNTHETIC else dataset.layout,
            "layout": dataset.layout,
            "root": None if dataset.root is None else str(dataset.root),
            "categories": list(categories),
            "test_images": {c: len(dataset.filter(category=c, split="test")) for c in categories},
        },
        "backbone": _jsonable(backbone.describe()),
        "environment": {
            "device": device,
            "device_name": _device_name(device),
            "precision": config.precision,
            "torch": torch.__version__,
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "torch_threads": torch.get_num_threads(),
        },
        "methods": {
            m: {
                "protocol": {
                    "learning": specs[m].learning,
                    "fixed": dict(specs[m].fixed),
                    "uses_shots": specs[m].uses_shots,
                    "zero_shot": specs[m].zero_shot,
                    "eval_size": specs[m].eval_size,
                    "aupro": specs[m].aupro,
                    "needs_text": specs[m].needs_text,
                },
                "options": options[m],
                "eval_size": config.eval_size_for(specs[m]),
                "eval_aspect": config.eval_aspect_for(options[m]),
            }
            for m in config.methods
        },
        "metric_variants": {
            "image_ap": "step (scikit-learn average_precision_score)",
            "image_aupr": "trapezoid (auc(recall, precision), VisA reference code)",
            "image_f1_max": "max F1 over the precision-recall curve",
            "pixel_ap": "step (scikit-learn average_precision_score)",
            "pixel_aupro": f"{config.aupro_variant}@0.3",
        },
        "shot_files": shot_files,
        "plan": {
            "units": [
                {**asdict(u.key), "hash": u.hash, "file": u.key.path("units", ".json").as_posix()}
                for u in plan
            ],
            "notes": notes,
        },
    }
    io.write_json(out / CONFIG_FILE, _jsonable(run_record))

    done = [u for u in plan if unit_is_done(out, u, config)]
    done_keys = {u.key for u in done}
    reporter = make_progress(progress)
    ctx = _Context(
        config,
        out,
        dataset,
        backbone,
        ResourceMeter(device),
        reporter,
        run_record["environment"]["device_name"],
    )
    result = BenchmarkResult(out, out / "report.md", reused=[u.key for u in done])
    if len(done) < len(plan):
        backbone.warm_up()
    reporter.start(len(plan), len(done))
    try:
        for index, unit in enumerate(plan, start=1):
            if unit.key in done_keys:
                continue
            record = _run_unit(unit, index, ctx)
            result.computed.append(unit.key)
            reporter.finish_unit(index, unit.key.label, _unit_summary(record))
            if on_unit_done is not None:
                on_unit_done(unit.key, record)
    finally:
        reporter.close()
    report = write_report(out)
    result.report_path = report.path
    result.units = report.units
    return result
