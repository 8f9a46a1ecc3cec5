"""Benchmark FineGrainedAD: fit time and inference ms/image for 1, 2 and 4 shots.

Uses the paper's backbone architecture with random weights (no download needed), so
the figures measure cost only, never accuracy. Example::

    python benchmarks/bench_finegrainedad.py --epochs 5      # shortened training
    python benchmarks/bench_finegrainedad.py                 # official 100 / 50 epochs
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

from anomalign.backbones import UntrainedBackboneWarning, load_backbone
from anomalign.methods.finegrainedad import FineGrainedAD


def _images(count: int, size: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(count)]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="ViT-B-16-plus-240:random")
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs for both models (default: 100 segmentation, 50 classification)",
    )
    parser.add_argument("--images", type=int, default=16, help="test images for ms/image")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--preset", default="default", choices=["default", "official"])
    parser.add_argument("--category", default="bottle")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedBackboneWarning)
        start = time.perf_counter()
        backbone = load_backbone(args.backbone, device=args.device)
        load_s = time.perf_counter() - start
    epochs = {} if args.epochs is None else {"seg_epochs": args.epochs, "cls_epochs": args.epochs}
    probe = FineGrainedAD(backbone, preset=args.preset, **epochs)
    seg_epochs, cls_epochs = probe.config.seg_epochs, probe.config.cls_epochs
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(
        f"backbone={args.backbone} (random weights, load {load_s:.1f}s) device={device_name} "
        f"threads={torch.get_num_threads()} preset={args.preset} "
        f"epochs: seg={seg_epochs} cls={cls_epochs} test images={args.images}"
    )
    size = backbone.image_size[0]
    tests = _images(args.images, size, seed=99)
    print(
        f"{'shots':>5} {'fit_s':>8} {'regions_s':>9} {'seg_ms/ep':>9} {'cls_ms/ep':>9} "
        f"{'ms/image':>9} {'trainable':>10}"
    )
    for shots in args.shots:
        detector = FineGrainedAD(backbone, shots=shots, preset=args.preset, **epochs)
        normals = _images(shots, size, seed=shots)
        _sync(args.device)
        start = time.perf_counter()
        detector.fit(normals, category=args.category, progress=False)
        _sync(args.device)
        fit_s = time.perf_counter() - start
        detector.predict(tests[: args.batch_size], batch_size=args.batch_size)  # warm-up
        _sync(args.device)
        start = time.perf_counter()
        detector.predict(tests, batch_size=args.batch_size)
        _sync(args.device)
        ms_image = 1000 * (time.perf_counter() - start) / len(tests)
        timings = detector.fit_info["timings"]
        seg_ms = 1000 * timings["seg_train"] / max(seg_epochs, 1)
        cls_ms = 1000 * timings["cls_train"] / max(cls_epochs, 1)
        params = detector.fit_info["trainable_parameters"]
        print(
            f"{shots:>5} {fit_s:>8.2f} {timings['regions']:>9.2f} {seg_ms:>9.1f} {cls_ms:>9.1f} "
            f"{ms_image:>9.1f} {params:>10}"
        )


if __name__ == "__main__":
    main()
