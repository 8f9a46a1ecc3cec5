"""``anomalign predict``: scores, decisions, maps and overlays for images and folders."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="score images with a detector bundle; write maps, overlays and a summary",
        description="Predict with a bundle written by `anomalign fit`. Writes per image the "
        "score, the decision (when the bundle has a threshold), the anomaly map and an "
        "overlay, plus summary.csv / summary.jsonl. Re-running into the same folder resumes; "
        "unreadable images are reported and skipped. Exit status 1 when some were skipped. "
        "--engine ray runs the job on a Ray cluster (a local one without --address) and "
        "writes one Parquet row per image instead (README: 'Many machines').",
    )
    parser.add_argument(
        "detector",
        help="detector bundle (.anomalign) or exported model (.onnx); with --detector-map, "
        "the bundle for inputs no row matches ('-': none, they become error rows)",
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        help="image files or folders (searched recursively); with --engine ray also "
        "pyarrow.fs URIs (s3://bucket/prefix, ...)",
    )
    parser.add_argument("--out", required=True, help="output folder (a URI with --engine ray)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--map-format",
        default="png16",
        choices=["png16", "npy"],
        help="16-bit PNG on the bundle's calibrated range, or raw float32 .npy",
    )
    parser.add_argument(
        "--cmap", default="jet", choices=["jet", "hot"], help="hot: perceptual (monotone)"
    )
    parser.add_argument("--alpha", type=float, default=0.5, help="heatmap opacity")
    parser.add_argument("--no-colorbar", action="store_true")
    parser.add_argument(
        "--masks", type=Path, help="ground-truth folder (KEY_mask.png or KEY.png) for contours"
    )
    parser.add_argument("--threshold", type=float, help="override the bundle's threshold")
    parser.add_argument("--max-side", type=int, default=1024, help="long side of maps/overlays")
    parser.add_argument("--grid", type=int, default=16, help="top-scoring overlays in grid.png")
    parser.add_argument("--no-resume", action="store_true", help="start over in --out")
    parser.add_argument("--device", default="cpu")
    ray = parser.add_argument_group(
        "scale-out (--engine ray; needs the 'ray' extra: pip install \"anomalign[ray]\")"
    )
    ray.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="local: this process, maps and overlays as files; ray: Ray Data, Parquet rows",
    )
    ray.add_argument(
        "--address", help="Ray cluster: 'auto' or ray://HOST:PORT (default: a local Ray)"
    )
    ray.add_argument("--workers", type=int, default=1, help="predictor actors (default 1)")
    ray.add_argument(
        "--gpus-per-worker",
        type=float,
        default=0.0,
        help="GPUs per actor: 1, or 0.5 for two actors per GPU (default 0: CPU actors)",
    )
    ray.add_argument("--cpus-per-worker", type=float, help="logical CPUs per actor")
    ray.add_argument("--no-maps", action="store_true", help="leave the map_png column empty")
    ray.add_argument(
        "--detector-map",
        type=Path,
        help="CSV of 'pattern,detector' rows (a folder or glob -> bundle), first match wins",
    )
    parser.set_defaults(func=run)


#: Options of the local engine only, with their defaults.
LOCAL_ONLY = {
    "map_format": "png16",
    "cmap": "jet",
    "alpha": 0.5,
    "no_colorbar": False,
    "masks": None,
    "grid": 16,
    "device": "cpu",
}
#: Options of the Ray engine only, with their defaults.
RAY_ONLY = {
    "address": None,
    "workers": 1,
    "gpus_per_worker": 0.0,
    "cpus_per_worker": None,
    "no_maps": False,
    "detector_map": None,
}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _check_engine_options(args: argparse.Namespace) -> None:
    from anomalign.cli import CommandError

    other = LOCAL_ONLY if args.engine == "ray" else RAY_ONLY
    given = [_flag(k) for k, default in other.items() if getattr(args, k) != default]
    if given:
        engine = "the local engine" if args.engine == "ray" else "--engine ray"
        raise CommandError(f"{', '.join(given)} only apply to {engine}.")
    if args.engine == "local" and args.detector == "-":
        raise CommandError("'-' as DETECTOR needs --engine ray with --detector-map.")


def run(args: argparse.Namespace) -> int:
    _check_engine_options(args)
    if args.engine == "ray":
        return run_ray(args)
    return run_local(args)


def run_ray(args: argparse.Namespace) -> int:
    """``--engine ray``: :func:`anomalign.distributed.predict_dataset`."""
    from anomalign.cli import CommandError

    try:
        from anomalign.distributed import predict_dataset
    except ImportError as error:
        raise CommandError(
            f"--engine ray needs Ray Data and pyarrow ({error}); install the extra: "
            'pip install "anomalign[ray]".'
        ) from None
    result = predict_dataset(
        None if args.detector == "-" else args.detector,
        args.inputs,
        args.out,
        detector_map=args.detector_map,
        address=args.address,
        workers=args.workers,
        gpus_per_worker=args.gpus_per_worker,
        cpus_per_worker=args.cpus_per_worker,
        batch_size=args.batch_size,
        maps=not args.no_maps,
        max_side=args.max_side,
        threshold=args.threshold,
        resume=not args.no_resume,
    )
    print(
        f"{result.total} image(s): {result.predicted} predicted, {result.resumed} already "
        f"done (resumed), {len(result.errors)} failed; {result.seconds:.1f} s"
    )
    for image, error in result.errors[:20]:
        print(f"  failed {image}: {error}")
    if len(result.errors) > 20:
        print(f"  ... and {len(result.errors) - 20} more (status 'error' in the Parquet rows)")
    print(f"Parquet: {result.out} ({len(result.files)} part file(s) written by this run)")
    return 1 if result.errors else 0


def run_local(args: argparse.Namespace) -> int:
    """The local engine: :func:`anomalign.inspection.predict_folder`."""
    import math

    from anomalign.errors import ConfigError
    from anomalign.inspection import check_predict_options, predict_folder
    from anomalign.methods import load_detector
    from anomalign.outdir import check_output_dir

    # everything a user typed is checked before the detector is loaded
    check_predict_options(
        args.map_format, args.cmap, args.alpha, args.batch_size, args.max_side, args.grid
    )
    if args.threshold is not None and not math.isfinite(args.threshold):
        raise ConfigError(f"--threshold must be a finite number, got {args.threshold}.")
    check_output_dir(args.out)
    detector = load_detector(args.detector, device=args.device)
    if args.threshold is not None:
        detector.set_threshold(args.threshold, "given to anomalign predict")
    if detector.untrained_backbone:
        print("UNTRAINED BACKBONE (random weights): scores and maps are not meaningful.")
    interactive = sys.stderr.isatty()

    def progress(done: int, total: int, errors: int) -> None:
        if interactive:
            print(f"\r  {done}/{total} images, {errors} skipped", end="", file=sys.stderr)

    result = predict_folder(
        detector,
        args.inputs,
        args.out,
        batch_size=args.batch_size,
        map_format=args.map_format,
        cmap=args.cmap,
        alpha=args.alpha,
        colorbar=not args.no_colorbar,
        masks=args.masks,
        resume=not args.no_resume,
        max_side=args.max_side,
        grid=args.grid,
        progress=progress,
    )
    if interactive:
        print(file=sys.stderr)
    print(
        f"{result.total} image(s): {result.predicted} predicted, {result.resumed} already "
        f"done (resumed), {len(result.errors)} skipped; {result.seconds:.1f} s"
    )
    for image, error in result.errors[:20]:
        print(f"  skipped {image}: {error}")
    if len(result.errors) > 20:
        print(f"  ... and {len(result.errors) - 20} more (status 'error' in summary.csv)")
    print(f"Summary: {result.summary_csv}")
    return 1 if result.errors else 0
