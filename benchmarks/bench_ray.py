"""Images/s of the local predict engine vs the Ray engine with 1 and 2 workers, one run.

Uses the real ViT-B-16-plus-240 architecture with random weights (timing only: outputs
are meaningless and flagged untrained) and AnoCLIP in its fast mode (one view, no TTA),
calibrated on a few synthetic normal images. Ray runs locally (``ray.init`` is done once,
before timing, as a cluster would already be up). Two figures per engine:

* end to end: images / wall time of the whole call (Ray: actors start, import torch and
  load the bundle; the driver loads it once to check it and take its fingerprint);
* steady: images / time between the first and the last batch written (from the local
  engine's progress callback, and from the Ray rows' ``predicted_at``), i.e. the rate once
  the workers are up, which is what a long job sees.

    python benchmarks/bench_ray.py [--images 32] [--batch-size 4] [--size 240]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("ANOMALIGN_RAY_PROGRESS", "0")


def _steady(stamps: list[tuple[float, int]], skip: int = 1) -> float:
    """Images/s after the first ``skip`` batches: ``stamps`` = (time, images) per batch."""
    stamps = sorted(stamps)
    if len(stamps) <= skip:
        return float("nan")
    span = stamps[-1][0] - stamps[skip - 1][0]
    return sum(n for _, n in stamps[skip:]) / span if span > 0 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--size", type=int, default=240, help="image side in pixels")
    parser.add_argument("--backbone", default="ViT-B-16-plus-240:random")
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="Ray num_cpus")
    args = parser.parse_args()

    import ray

    from anomalign.backbones import UntrainedBackboneWarning
    from anomalign.data import generate_synthetic_dataset
    from anomalign.distributed import predict_dataset, read_results
    from anomalign.inspection import fit_for_inspection, predict_folder
    from anomalign.methods import create_detector, load_detector

    warnings.simplefilter("ignore", UntrainedBackboneWarning)
    work = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    try:
        root = generate_synthetic_dataset(
            work / "synth",
            categories=("synth_texture",),
            image_size=args.size,
            n_train=4,
            n_test_good=args.images,
            n_test_defect=1,
        )
        images = sorted((root / "synth_texture" / "test").rglob("*.png"))[: args.images]
        inputs = work / "in"
        inputs.mkdir()
        for index, image in enumerate(images):
            shutil.copy(image, inputs / f"{index:04d}.png")
        detector = create_detector("anoclip", backbone=args.backbone, image_score="single")
        fit_for_inspection(
            detector, root / "synth_texture" / "train" / "good", category="synth_texture"
        )
        bundle = detector.save(work / "bench.anomalign")
        count = len(images)
        print(f"{count} images of {args.size} px, batch {args.batch_size}, {args.backbone}, "
              f"AnoCLIP fast, {os.cpu_count()} cores")  # fmt: skip

        results: dict[str, tuple[float, float]] = {}
        local = load_detector(bundle)
        stamps: list[tuple[float, int]] = []
        last = [0]

        def progress(done: int, total: int, errors: int) -> None:
            stamps.append((time.perf_counter(), done - last[0]))
            last[0] = done

        start = time.perf_counter()
        predict_folder(local, [inputs], work / "local", batch_size=args.batch_size,
                       grid=0, progress=progress)  # fmt: skip
        results["local engine"] = (count / (time.perf_counter() - start), _steady(stamps))
        del local

        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        for workers in (1, 2):
            out = work / f"ray{workers}"
            start = time.perf_counter()
            predict_dataset(bundle, [inputs], out, batch_size=args.batch_size, workers=workers)
            wall = time.perf_counter() - start
            table = read_results(out, columns=["predicted_at"])
            per_batch: dict[float, int] = {}
            for stamp in table["predicted_at"].to_pylist():
                per_batch[stamp.timestamp()] = per_batch.get(stamp.timestamp(), 0) + 1
            results[f"ray, {workers} worker(s)"] = (
                count / wall,
                _steady(list(per_batch.items()), skip=workers),
            )
        ray.shutdown()

        base_wall, base_steady = results["local engine"]
        print(f"{'engine':20s} {'end to end':>12s} {'ratio':>6s} {'steady':>12s} {'ratio':>6s}")
        for name, (wall, steady) in results.items():
            print(f"{name:20s} {wall:8.2f} im/s {wall / base_wall:5.2f}x "
                  f"{steady:8.2f} im/s {steady / base_steady:5.2f}x")  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
