"""Benchmark FineGrainedAD: fit time per phase before vs after (issue 19), and inference.

Uses the paper's backbone architecture with random weights (no download needed), so
the figures measure cost only, never accuracy. For each shot count the detector is
fitted twice in this one run: with the reference training path (``fit(fast=False)``:
full-length prompts, the code before the speed work) and with the default one, and the
per-epoch losses of the two are compared.

The official schedule (100 segmentation + 50 classification epochs) takes about half an
hour per fit on a 2-core CPU, so by default a few epochs per phase are measured and the
full-schedule fit time is extrapolated from the per-epoch times (``encode + regions +
100 x seg epoch + 50 x cls epoch``); ``--full-schedule`` runs it for real. Inference is
reported in ms/image and as a ratio to a bare ``encode_image`` (preprocessing included)
of the same batches. Example::

    python benchmarks/bench_finegrainedad.py --shots 1 --epochs 2   # quick
    python benchmarks/bench_finegrainedad.py --full-schedule         # the real thing
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

from anomalign.backbones import UntrainedBackboneWarning, load_backbone
from anomalign.methods.finegrainedad import FineGrainedAD

PHASES = ("encode", "regions", "seg_train", "cls_train")


def _images(count: int, size: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(count)]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _fit(backbone, shots, options, normals, category, fast, device) -> tuple[FineGrainedAD, float]:
    detector = FineGrainedAD(backbone, shots=shots, **options)
    _sync(device)
    start = time.perf_counter()
    detector.fit(normals, category=category, progress=False, fast=fast)
    _sync(device)
    return detector, time.perf_counter() - start


def _schedule_seconds(timings: dict[str, float], epochs: tuple[int, int], full: tuple[int, int]):
    """Fit seconds at the ``full`` schedule from per-epoch times at ``epochs``."""
    seg = timings["seg_train"] / max(epochs[0], 1) * full[0]
    cls = timings["cls_train"] / max(epochs[1], 1) * full[1]
    return timings["encode"] + timings["regions"] + seg + cls


def _inference(detector, backbone, tests, batch_size, device) -> tuple[float, float]:
    """ms/image of ``predict`` and of a bare ``encode_image`` of the same batches."""
    batches = [tests[i : i + batch_size] for i in range(0, len(tests), batch_size)]
    detector.predict(batches[0], batch_size=batch_size)  # warm-up
    with torch.inference_mode():
        backbone.encode_global(backbone.preprocess(batches[0]))
    best_predict, best_bare = float("inf"), float("inf")
    for _ in range(2):  # interleaved, best of two: the machine's load varies
        _sync(device)
        start = time.perf_counter()
        detector.predict(tests, batch_size=batch_size)
        _sync(device)
        best_predict = min(best_predict, time.perf_counter() - start)
        start = time.perf_counter()
        with torch.inference_mode():
            for batch in batches:
                backbone.encode_global(backbone.preprocess(batch))
        _sync(device)
        best_bare = min(best_bare, time.perf_counter() - start)
    return 1000 * best_predict / len(tests), 1000 * best_bare / len(tests)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="ViT-B-16-plus-240:random")
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument(
        "--epochs", type=int, default=2, help="measured epochs per phase (default 2)"
    )
    parser.add_argument(
        "--full-schedule", action="store_true", help="run the official 100 / 50 epochs"
    )
    parser.add_argument("--no-reference", action="store_true", help="skip the 'before' fits")
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
    official = FineGrainedAD(backbone, preset=args.preset).config
    full = (official.seg_epochs, official.cls_epochs)
    epochs = full if args.full_schedule else (args.epochs, args.epochs)
    options = {"preset": args.preset, "seg_epochs": epochs[0], "cls_epochs": epochs[1]}
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(
        f"backbone={args.backbone} (random weights, load {load_s:.1f}s) device={device_name} "
        f"threads={torch.get_num_threads()} preset={args.preset} measured epochs: "
        f"seg={epochs[0]} cls={epochs[1]} (official {full[0]}/{full[1]}"
        f"{'' if args.full_schedule else ', fit times extrapolated'}) test images={args.images}"
    )
    size = backbone.image_size[0]
    tests = _images(args.images, size, seed=99)
    paths = (True,) if args.no_reference else (False, True)
    header = (
        f"{'shots':>5} {'path':>6} {'encode_s':>8} {'regions_s':>9} {'seg_s/ep':>8} "
        f"{'cls_s/ep':>8} {'fit_s':>8} {'fit@100/50':>10}"
    )
    print(header)
    summary = []
    for shots in args.shots:
        normals = _images(shots, size, seed=shots)
        fitted = {}
        for fast in paths:
            detector, fit_s = _fit(
                backbone, shots, options, normals, args.category, fast, args.device
            )
            timings = detector.fit_info["timings"]
            scheduled = _schedule_seconds(timings, epochs, full)
            fitted[fast] = (detector, timings, scheduled)
            print(
                f"{shots:>5} {'after' if fast else 'before':>6} {timings['encode']:>8.2f} "
                f"{timings['regions']:>9.2f} {timings['seg_train'] / epochs[0]:>8.2f} "
                f"{timings['cls_train'] / epochs[1]:>8.2f} {fit_s:>8.1f} {scheduled:>10.0f}"
            )
        after, after_t, after_fit = fitted[True]
        predict_ms, bare_ms = _inference(after, backbone, tests, args.batch_size, args.device)
        line = f"{shots:>5} inference {predict_ms:.1f} ms/image = x{predict_ms / bare_ms:.2f} bare"
        line += f" encode_image ({bare_ms:.1f} ms/image)"
        if False in fitted:
            before, before_t, before_fit = fitted[False]
            diffs = [
                max(abs(a - b) for a, b in zip(after.fit_info[k], before.fit_info[k], strict=True))
                for k in ("seg_losses", "cls_losses")
            ]
            ratios = {p: before_t[p] / after_t[p] for p in PHASES}
            line += (
                f"\n      speed-up seg x{ratios['seg_train']:.2f}, cls x{ratios['cls_train']:.2f}, "
                f"regions x{ratios['regions']:.2f}, fit@100/50 x{before_fit / after_fit:.2f} "
                f"({before_fit / 60:.1f} -> {after_fit / 60:.1f} min); max |loss diff| "
                f"seg {diffs[0]:.3g}, cls {diffs[1]:.3g}"
            )
            summary.append((shots, before_fit / after_fit))
        print(line)
    if summary:
        ratios = ", ".join(f"{s} shots x{r:.2f}" for s, r in summary)
        print(f"fit speed-up at the official schedule: {ratios}")


if __name__ == "__main__":
    main()
