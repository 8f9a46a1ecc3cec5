"""Benchmark the ONNX export: ms/image of onnxruntime vs PyTorch per method, in one run.

For each method a detector is built on the paper's backbone architecture with random
weights (cost only, never accuracy): AnoCLIP from random unit text features (encoding its
924 prompts through the text tower is not what is timed; ``--encode-prompts`` does it),
FineGrainedAD fitted on one image for ``--epochs`` epochs. It is saved, exported with a
dynamic batch, and then both
the PyTorch detector and :class:`~anomalign.export.OnnxDetector` predict the same images
end to end (decode, resize, normalise, graph, maps) at each batch size, on the same
number of threads. Also printed: export time, file size and the largest score / map
difference between the two. Example::

    python benchmarks/bench_export.py                         # anoclip and finegrainedad
    python benchmarks/bench_export.py --methods anoclip-views22 --images 2 --batch-sizes 1 2

The load average is printed: on a shared machine both timings suffer alike, but the
ratio is the figure to read.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from anomalign import AnoCLIP, Detector, create_detector
from anomalign.backbones import Backbone, UntrainedBackboneWarning, load_backbone
from anomalign.bundles import DetectorBundle
from anomalign.export import OnnxDetector, export_detector
from anomalign.methods.anoclip import AnoCLIPConfig

#: Benchmark name -> (registered method, options).
METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "anoclip": ("anoclip", {"image_score": "single"}),
    "anoclip-views22": ("anoclip", {"image_score": "views22"}),
    "finegrainedad": ("finegrainedad", {}),
}


def _images(count: int, height: int, width: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]


def _anoclip_with_random_text(backbone: Backbone, options: dict[str, Any]) -> Detector:
    """AnoCLIP restored from a bundle whose text features are random unit vectors."""
    generator = torch.Generator().manual_seed(0)
    dim = backbone.embed_dim
    bundle = DetectorBundle(
        method="anoclip",
        backbone=str(backbone.spec),
        config=AnoCLIPConfig.from_preset("default", **options).to_dict(),
        tensors={
            "text_pair": F.normalize(torch.randn(dim, 2, generator=generator), dim=0),
            "prompt_basis": F.normalize(torch.randn(4, dim, generator=generator), dim=-1),
        },
        extra={"category": "bottle", "object_name": "bottle", "domain": "object"},
    )
    return AnoCLIP.from_bundle(bundle, backbone=backbone)


def _build(name: str, backbone: Backbone, args: argparse.Namespace, normals) -> Detector:
    method, options = METHODS[name]
    if method == "anoclip" and not args.encode_prompts:
        return _anoclip_with_random_text(backbone, options)
    if method == "finegrainedad":
        options = {**options, "seg_epochs": args.epochs, "cls_epochs": args.epochs}
        if backbone.num_blocks < 8:  # the paper's blocks 3 and 8 need a deep tower
            options["memory_blocks"] = (1, backbone.num_blocks)
        return create_detector(method, backbone=backbone, **options).fit(
            normals, category="bottle", progress=False
        )
    return create_detector(method, backbone=backbone, **options).fit(category="bottle")


def _ms_per_image(detector: Any, images: list[np.ndarray], batch: int, repeats: int) -> float:
    detector.predict(images[:batch], batch_size=batch)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        detector.predict(images, batch_size=batch)
        best = min(best, time.perf_counter() - start)
    return 1000 * best / len(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="ViT-B-16-plus-240:random")
    parser.add_argument(
        "--methods", nargs="+", default=["anoclip", "finegrainedad"], choices=list(METHODS)
    )
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--images", type=int, default=8, help="test images per timing")
    parser.add_argument("--repeats", type=int, default=1, help="timings per cell (best kept)")
    parser.add_argument("--epochs", type=int, default=1, help="FineGrainedAD training epochs")
    parser.add_argument(
        "--encode-prompts", action="store_true", help="fit AnoCLIP's real text features"
    )
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--workdir", type=Path, help="where bundles and models go (default: tmp)")
    args = parser.parse_args()

    warnings.simplefilter("ignore", UntrainedBackboneWarning)
    torch.set_num_threads(args.threads)
    backbone = load_backbone(args.backbone)
    height, width = backbone.image_size
    tests = _images(args.images, height + 16, width + 32, seed=1)  # resized like real images
    normals = _images(1, height, width, seed=2)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(
        f"backbone={args.backbone} (random weights) cpu threads={args.threads} "
        f"(os.cpu_count={os.cpu_count()}, load average {load}) images={args.images} "
        f"torch {torch.__version__}"
    )
    header = (
        f"{'method':<16} {'batch':>5} {'torch ms/img':>12} {'ort ms/img':>10} {'ratio':>6} "
        f"{'export s':>8} {'MB':>7} {'max|dscore|':>11} {'max|dmap|':>10}"
    )
    print(header)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.workdir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        for name in args.methods:
            method, options = METHODS[name]
            if method == "finegrainedad":
                options = {**options, "seg_epochs": args.epochs, "cls_epochs": args.epochs}
                if backbone.num_blocks < 8:  # the paper's blocks 3 and 8 need a deep tower
                    options["memory_blocks"] = (1, backbone.num_blocks)
            detector = create_detector(method, backbone=backbone, **options)
            fit_inputs = {"progress": False} if method == "finegrainedad" else {}
            detector.fit(
                normals if method == "finegrainedad" else [], category="bottle", **fit_inputs
            )
            bundle = detector.save(root / f"{name}.anomalign")
            result = export_detector(bundle, root / f"{name}.onnx", dynamic_batch=True)
            onnx = OnnxDetector(result.path, threads=args.threads)
            reference, got = detector.predict(tests), onnx.predict(tests)
            d_score = float(np.abs(reference.scores - got.scores).max())
            d_map = float(np.abs(reference.maps - got.maps).max())
            for batch in args.batch_sizes:
                torch_ms = _ms_per_image(detector, tests, batch, args.repeats)
                ort_ms = _ms_per_image(onnx, tests, batch, args.repeats)
                print(
                    f"{name:<16} {batch:>5} {torch_ms:>12.1f} {ort_ms:>10.1f} "
                    f"{ort_ms / torch_ms:>5.2f}x {result.seconds:>8.1f} "
                    f"{result.size_bytes / 1e6:>7.1f} {d_score:>11.2e} {d_map:>10.2e}"
                )


if __name__ == "__main__":
    main()
