"""``export_detector``: a fitted detector bundle -> one self-describing ONNX file.

Steps: load the bundle (the method's own ``from_bundle``), build the method's export
graph (:mod:`anomalign.export.graphs`), trace it with torch's dynamo-based exporter
(``torch.onnx.export(..., dynamo=True)``), optionally convert weights and activations
to float16 (inputs and outputs stay float32), write the threshold, calibration,
preprocessing and provenance into ``metadata_props`` (:mod:`anomalign.export.metadata`),
run ``onnx.checker`` and write the file atomically.

What cannot be exported is refused with a one-line :class:`ExportError` saying why:
AnoCLIP+ (test-time adaptation), AnoCLIP with ``tiling="tiles"``, FineGrainedAD with the
approximate IVF memory.
"""

from __future__ import annotations

import hashlib
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from anomalign import __version__
from anomalign.bundles import load_bundle
from anomalign.data.images import METHOD_DECODE_SIDE
from anomalign.errors import AnomalignError, ConfigError
from anomalign.export.graphs import IMAGE_SCORES, AnoCLIPGraph, FineGrainedADGraph
from anomalign.export.metadata import INPUT_NAME, OUTPUT_NAMES, ExportMetadata, Preprocessing
from anomalign.io import write_bytes
from anomalign.methods.base import Detector
from anomalign.methods.finegrainedad.detector import PRE_RESIZE
from anomalign.methods.registry import method_spec

FORMATS: tuple[str, ...] = ("onnx", "openvino")
EXPORTER = "torch.onnx.export(dynamo=True)"
#: Largest batch a dynamic-batch graph is declared for.
MAX_BATCH = 4096


class ExportError(AnomalignError):
    """A detector that cannot be exported, or an export that failed."""


@dataclass
class ExportResult:
    """What :func:`export_detector` wrote."""

    path: Path
    format: str
    method: str
    exporter: str
    opset: int
    seconds: float
    size_bytes: int
    dynamic_batch: bool
    fp16: bool
    image_score: str
    notes: list[str] = field(default_factory=list)


REFUSALS: dict[str, str] = {
    "anoclip+": (
        "AnoCLIP+ cannot be exported: its test-time adaptation runs an AdamW optimisation "
        "loop on every image, which a fixed inference graph cannot hold; export an "
        "'anoclip' bundle (zero-shot, no adaptation) instead."
    ),
}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_for_export(source: str | Path | Detector) -> tuple[Detector, dict[str, Any]]:
    """The detector to export (read from a bundle file, or given) and where it came from.

    Refusals by method name come before the backbone is loaded.
    """
    if isinstance(source, Detector):
        if source.name in REFUSALS:
            raise ExportError(REFUSALS[source.name])
        where = {"bundle": None if source.path is None else str(source.path)}
        return source, {**where, "detector_fingerprint": source.fingerprint()}
    path = Path(source)
    bundle = load_bundle(path)
    method = bundle.method.lower()
    if method in REFUSALS:
        raise ExportError(REFUSALS[method])
    detector = method_spec(method).cls.from_bundle(bundle)
    detector.path = path
    return detector, {"bundle": str(path), "bundle_sha256": _sha256(path)}


def build_graph(detector: Detector, image_score: str | None = None) -> tuple[nn.Module, str]:
    """The export graph of a fitted method detector and the image score it computes."""
    name = str(detector.name)
    if name in REFUSALS:
        raise ExportError(REFUSALS[name])
    if name == "anoclip":
        config = detector.config
        if config.tiling != "squash":
            raise ExportError(
                "AnoCLIP with tiling='tiles' cannot be exported: the number and layout of "
                "tiles depend on each image's aspect ratio; refit with tiling=squash."
            )
        score = image_score or config.image_score
        if score not in IMAGE_SCORES:
            raise ConfigError(f"image score must be one of {IMAGE_SCORES}, got {score!r}.")
        model = detector.model_for(detector.category, detector.object_name, detector.domain)
        return AnoCLIPGraph(detector, model, score).eval(), score
    if name == "finegrainedad":
        if image_score not in (None, "harmonic"):
            raise ConfigError("FineGrainedAD has one image score; --image-score is AnoCLIP's.")
        if detector.config.memory_index != "exact":
            raise ExportError(
                f"FineGrainedAD with memory_index='{detector.config.memory_index}' cannot be "
                "exported: the approximate index searches data-dependent inverted lists; refit "
                "with memory_index=exact."
            )
        return FineGrainedADGraph(detector).eval(), "harmonic"
    raise ExportError(f"Method '{name}' has no export graph.")


def preprocessing_of(detector: Detector) -> Preprocessing:
    """The method's image preprocessing, as the runtime must reproduce it."""
    pre = getattr(detector, "preprocessor", None) or detector.backbone.preprocessor
    config = detector.config
    bgr = bool(getattr(config, "test_bgr", False))
    pre_resize = PRE_RESIZE if getattr(config, "pre_resize", "none") == "cv2_1024" else None
    return Preprocessing(
        image_size=tuple(int(v) for v in pre.image_size),  # type: ignore[arg-type]
        mean=tuple(float(v) for v in pre.mean),  # type: ignore[arg-type]
        std=tuple(float(v) for v in pre.std),  # type: ignore[arg-type]
        interpolation=pre.interpolation,
        channel_order="bgr" if bgr else "rgb",
        decode_max_side=METHOD_DECODE_SIDE,
        pre_resize=pre_resize,
    )


def _trace(graph: nn.Module, size: tuple[int, int], dynamic_batch: bool, opset: int | None):
    """Run torch's dynamo exporter; return the ONNX ``ModelProto``."""
    batch = 2 if dynamic_batch else 1
    device = next(graph.parameters()).device  # a given detector may live on a GPU
    example = torch.zeros(batch, 3, *size, device=device)
    dynamic = (
        {"pixels": {0: torch.export.Dim("batch", min=1, max=MAX_BATCH)}} if dynamic_batch else None
    )
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            graph,
            (example,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            opset_version=opset,
            dynamic_shapes=dynamic,
            verbose=False,
            external_data=False,
        )
    if program is None:  # pragma: no cover - dynamo=True always returns a program
        raise ExportError("torch.onnx.export returned no program.")
    return program.model_proto


def _to_fp16(model: Any) -> Any:
    """Float16 weights and activations; float32 inputs and outputs (casts at the edges)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        converted = convert_float_to_float16(model, keep_io_types=True)
    _sort_nodes(converted.graph)
    return converted


def _sort_nodes(graph: Any) -> None:
    """Order ``graph.node`` topologically (Kahn; the float16 converter appends its casts)."""
    nodes = list(graph.node)
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    producer = {out: index for index, node in enumerate(nodes) for out in node.output}
    waiting = [0] * len(nodes)
    consumers: dict[int, list[int]] = {}
    for index, node in enumerate(nodes):
        for name in set(node.input):
            if name not in available and name in producer:
                waiting[index] += 1
                consumers.setdefault(producer[name], []).append(index)
    queue = [i for i, count in enumerate(waiting) if count == 0]
    order: list[int] = []
    while queue:
        index = queue.pop(0)
        order.append(index)
        for consumer in consumers.get(index, []):
            waiting[consumer] -= 1
            if waiting[consumer] == 0:
                queue.append(consumer)
    if len(order) != len(nodes):
        raise ExportError("The float16 graph has a cycle; it cannot be sorted.")
    copies = []
    for index in order:
        copy = type(nodes[index])()
        copy.CopyFrom(nodes[index])
        copies.append(copy)
    del graph.node[:]
    graph.node.extend(copies)


def export_detector(
    source: str | Path | Detector,
    out: str | Path,
    *,
    format: str = "onnx",
    opset: int | None = None,
    dynamic_batch: bool = False,
    fp16: bool = False,
    image_score: str | None = None,
    log: Callable[[str], None] | None = None,
) -> ExportResult:
    """Export the detector bundle ``source`` to ``out``.

    Args:
        source: a ``.anomalign`` bundle written by ``anomalign fit`` / ``save``, or a
            fitted :class:`~anomalign.Detector`.
        out: the ``.onnx`` file (``format="openvino"``: the ``.xml``, with its ``.bin``).
        format: "onnx" or "openvino" (needs the ``openvino`` package).
        opset: ONNX opset (default: the exporter's).
        dynamic_batch: a symbolic batch dimension (default: batch 1).
        fp16: float16 weights and compute (inputs and outputs stay float32).
        image_score: AnoCLIP only: "single" or "views22" (default: the bundle's own). A
            different score than the bundle's drops its threshold (set on other scores).
        log: called with notes for the user.
    """
    if format not in FORMATS:
        raise ConfigError(f"Export format must be one of {FORMATS}, got {format!r}.")
    say = log or (lambda message: None)
    out = Path(out)
    started = time.perf_counter()
    detector, origin = load_for_export(source)
    graph, score_kind = build_graph(detector, image_score)
    notes: list[str] = []
    threshold = None if detector.threshold is None else detector.threshold.to_dict()
    calibration = detector.calibration.to_dict()
    own = getattr(detector.config, "image_score", score_kind)
    if detector.name == "anoclip" and score_kind != own:
        if threshold is not None:
            notes.append(
                f"The bundle's threshold was set on '{own}' image scores, not '{score_kind}': "
                "it is left out; set one on the exported model's scores."
            )
        threshold = None
        if calibration:
            calibration = {**calibration, "score_low": None, "score_high": None}
    preprocessing = preprocessing_of(detector)
    try:
        model = _trace(graph, preprocessing.image_size, dynamic_batch, opset)
    except AnomalignError:
        raise
    except Exception as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ExportError(f"torch's ONNX exporter failed on {detector.name}: {first}") from error
    if fp16:
        model = _to_fp16(model)
    opset_used = max(
        (int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0
    )
    map_size = tuple(int(v) for v in graph.size)
    metadata = ExportMetadata(
        method=detector.name,
        preprocessing=preprocessing,
        outputs={
            "map_size": list(map_size),
            "batch": "dynamic" if dynamic_batch else 1,
            "image_score": score_kind,
            "names": list(OUTPUT_NAMES),
            "input": INPUT_NAME,
        },
        threshold=threshold,
        calibration=calibration,
        provenance={
            **origin,
            "category": getattr(detector, "category", None),
            "detector": detector.describe(),
            "exporter": EXPORTER,
            "opset": opset_used,
            "fp16": fp16,
            "anomalign_version": __version__,
            "torch_version": torch.__version__,
            "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    )
    _set_metadata(model, metadata)
    _check(model)
    if format == "onnx":
        write_bytes(out, model.SerializeToString())
        size = out.stat().st_size
    else:
        from anomalign.export.openvino_export import save_openvino

        size = save_openvino(model, metadata, out)
    for note in notes:
        say(note)
    return ExportResult(
        path=out,
        format=format,
        method=detector.name,
        exporter=EXPORTER,
        opset=opset_used,
        seconds=time.perf_counter() - started,
        size_bytes=size,
        dynamic_batch=dynamic_batch,
        fp16=fp16,
        image_score=score_kind,
        notes=notes,
    )


def _set_metadata(model: Any, metadata: ExportMetadata) -> None:
    props = metadata.to_props()
    keep = [p for p in model.metadata_props if p.key not in props]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name = "anomalign"
    model.producer_version = __version__
    model.doc_string = (
        f"anomalign {metadata.method} detector: {INPUT_NAME} (B, 3, H, W) float32 -> "
        f"score (B,), map (B, h, w); see the anomalign.* metadata."
    )


def _check(model: Any) -> None:
    import onnx

    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as error:
        first = str(error).strip().splitlines()[0]
        raise ExportError(f"The exported model fails onnx.checker: {first}") from error
