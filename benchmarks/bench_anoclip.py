"""Time AnoCLIP (fast: one view; official: 22 views) and AnoCLIP+ per image.

Runs the real ViT-B-16-plus-240 architecture with random weights (timing only: the
outputs are meaningless and flagged untrained). Prints ms per image on CPU and, when
one is present, on CUDA, with the ratio of each variant to a bare ``encode_image``
(preprocessing included) of the same batches, measured interleaved in the same run, and
to the fast mode.

    python benchmarks/bench_anoclip.py [--images 8] [--batch 4] [--device cpu|cuda|all]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

from anomalign.backbones import UntrainedBackboneWarning, load_backbone
from anomalign.methods.anoclip import AnoCLIP

VARIANTS = {
    "AnoCLIP fast (1 view)": {"tta": False, "image_score": "single"},
    "AnoCLIP (22 views)": {"tta": False, "image_score": "views22"},
    "AnoCLIP+ (22 views, 5 TTA steps)": {"tta": True, "image_score": "views22"},
}


def _bare_ms(backbone, images: list[np.ndarray], batch: int, device: str) -> float:
    """ms/image of a bare ``encode_image`` (preprocessing included) of the same batches."""
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.inference_mode():
        for first in range(0, len(images), batch):
            backbone.encode_global(backbone.preprocess(images[first : first + batch]))
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1000 / len(images)


def bench(device: str, images: list[np.ndarray], batch: int, repeats: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedBackboneWarning)
        backbone = load_backbone("ViT-B-16-plus-240:random", device=device)
    print(f"\n== {device} ({torch.get_num_threads()} threads), {len(images)} images, batch {batch}")
    _bare_ms(backbone, images[:batch], batch, device)  # warm-up
    reference = None
    for label, options in VARIANTS.items():
        detector = AnoCLIP(backbone, preset="default", **options)
        detector.predict(images[:1], category="bottle")  # warm-up, builds text features
        timings, bare = [], []
        for _ in range(repeats):  # interleaved with the bare encoder: the load varies
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            detector.predict(images, category="bottle", batch_size=batch)
            if device == "cuda":
                torch.cuda.synchronize()
            timings.append((time.perf_counter() - start) * 1000 / len(images))
            bare.append(_bare_ms(backbone, images, batch, device))
        ms, bare_ms = min(timings), min(bare)
        reference = reference or ms
        print(
            f"{label:36s} {ms:9.1f} ms/image   x{ms / bare_ms:5.2f} vs bare encode_image "
            f"({bare_ms:.1f} ms/image)   x{ms / reference:5.2f} vs fast"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (300, 300, 3), dtype=np.uint8) for _ in range(args.images)]
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    for device in devices:
        if device == "cuda" and not torch.cuda.is_available():
            print("\n== cuda: not available on this machine")
            continue
        bench(device, images, args.batch, args.repeats)


if __name__ == "__main__":
    main()
