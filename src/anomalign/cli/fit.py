"""``anomalign fit``: fit a detector on a few normal images and write a detector bundle."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from anomalign.options import parse_key_value


def parse_options(pairs: list[str] | None, flag: str) -> dict[str, Any]:
    """``KEY=VALUE`` pairs as a dict; values are read as JSON when they parse, else text."""
    return dict(parse_key_value(pair, flag) for pair in pairs or [])


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "fit",
        help="fit a detector on normal images and write a detector bundle",
        description="Fit a method on a few normal images (none for zero-shot methods), "
        "calibrate its heatmaps on normal images, set a decision threshold and write one "
        "bundle file that `anomalign predict` and anomalign.load_detector read.",
    )
    parser.add_argument("--method", required=True, help="anoclip, anoclip+ or finegrainedad")
    parser.add_argument(
        "--normal",
        nargs="+",
        default=[],
        metavar="PATH",
        help="normal reference images or folders (zero-shot methods use them only to "
        "calibrate heatmaps and thresholds)",
    )
    parser.add_argument("--category", help="the part's name (prompts, shipped caption)")
    parser.add_argument("--out", required=True, type=Path, help="bundle file to write")
    parser.add_argument(
        "--backbone",
        help="backbone spec (default: both papers' ViT-B-16-plus-240:laion400m_e32)",
    )
    parser.add_argument("--preset", default="default", choices=["default", "official"])
    parser.add_argument(
        "--option",
        action="append",
        metavar="KEY=VALUE",
        help="method option (repeatable), e.g. image_score=single or seg_epochs=20",
    )
    parser.add_argument(
        "--captions", help="FineGrainedAD caption: a shipped name or a caption JSON file"
    )
    parser.add_argument(
        "--fit-option", action="append", metavar="KEY=VALUE", help="extra fit argument"
    )
    parser.add_argument(
        "--val-normal", nargs="+", default=[], metavar="PATH", help="normal validation images"
    )
    parser.add_argument(
        "--val-anomalous",
        nargs="+",
        default=[],
        metavar="PATH",
        help="anomalous validation images (for --f1)",
    )
    threshold = parser.add_mutually_exclusive_group()
    threshold.add_argument("--threshold", type=float, help="manual decision threshold")
    threshold.add_argument(
        "--fpr",
        type=float,
        help="threshold flagging at most this fraction of the normal validation images",
    )
    threshold.add_argument(
        "--f1", action="store_true", help="F1-optimal threshold on the labelled validation images"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from anomalign.inspection import fit_detector
    from anomalign.methods.anoclip import DEFAULT_BACKBONE

    fit_options = parse_options(args.fit_option, "--fit-option")
    if args.captions:
        fit_options["captions"] = args.captions
    if args.out.suffix != ".anomalign":
        print(f"note: detector bundles usually end in .anomalign (writing '{args.out}')")
    inspector = fit_detector(
        args.method,
        args.normal,
        category=args.category,
        backbone=args.backbone or DEFAULT_BACKBONE,
        preset=args.preset,
        method_options=parse_options(args.option, "--option"),
        fit_options=fit_options,
        device=args.device,
        val_normal=args.val_normal,
        val_anomalous=args.val_anomalous,
        threshold=args.threshold,
        fpr=args.fpr,
        f1=args.f1,
        batch_size=args.batch_size,
        out=args.out,
        log=lambda message: print(f"note: {message}"),
    )
    info = inspector.describe()
    calibration = inspector.calibration
    fit = inspector.provenance
    print(f"Fitted {inspector.method} on {len(fit['normal_images'])} normal image(s)")
    print(f"  backbone: {info['backbone']}")
    if inspector.untrained_backbone:
        print("  UNTRAINED BACKBONE (random weights): scores and maps are not meaningful.")
    print(
        f"  heatmap range: [{calibration.map_low:.6g}, {calibration.map_high:.6g}] "
        f"({calibration.source})"
    )
    if inspector.threshold is None:
        print("  threshold: none (predict reports scores only; see --threshold/--fpr/--f1)")
    else:
        t = inspector.threshold
        stats = ", ".join(f"{k}={v:.4g}" for k, v in t.stats.items() if isinstance(v, float))
        print(f"  threshold: {t.value:.6g} ({t.mode}; {t.source}{'; ' + stats if stats else ''})")
    size = args.out.stat().st_size
    print(f"Wrote {args.out} ({size / 1e6:.2f} MB) in {fit['total_seconds']:.1f} s")
    return 0
