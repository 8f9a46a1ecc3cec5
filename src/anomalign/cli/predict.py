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
        "unreadable images are reported and skipped. Exit status 1 when some were skipped.",
    )
    parser.add_argument(
        "detector", type=Path, help="detector bundle (.anomalign) or exported model (.onnx)"
    )
    parser.add_argument("inputs", nargs="+", help="image files or folders (searched recursively)")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
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
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
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
