"""``anomalign demo``: fit, calibrate, predict and evaluate on data anomalign makes itself."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run AnoCLIP and FineGrainedAD end to end on demo data and write a report",
        description="Build a synthetic dataset (plus ELPV solar cells when the elpv extra is "
        "installed), fit AnoCLIP and FineGrainedAD, calibrate and threshold them, save and "
        "reload their bundles, predict the test images and write report.md with metrics "
        "and heatmaps. Without pretrained weights the demo says how to provide them and "
        "carries on with an untrained backbone, marking every output as such.",
    )
    parser.add_argument(
        "--backbone",
        help="backbone spec (default: both papers' ViT-B-16-plus-240:laion400m_e32)",
    )
    parser.add_argument("--out", type=Path, default=Path("anomalign-demo"), help="output folder")
    parser.add_argument("--quick", action="store_true", help="fewer images and epochs")
    parser.add_argument(
        "--methods", nargs="+", default=None, help="methods to run (default: anoclip finegrainedad)"
    )
    parser.add_argument("--no-elpv", action="store_true", help="leave the ELPV cells out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from anomalign.backbones import DEFAULT_BACKBONE
    from anomalign.demo import DEMO_METHODS, run_demo

    report = run_demo(
        args.out,
        backbone=args.backbone or DEFAULT_BACKBONE,
        quick=args.quick,
        methods=args.methods or DEMO_METHODS,
        elpv=not args.no_elpv,
        seed=args.seed,
        device=args.device,
    )
    return 0 if report["results"] else 1
