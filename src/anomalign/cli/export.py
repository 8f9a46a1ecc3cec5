"""``anomalign export``: a fitted detector bundle -> an ONNX (or OpenVINO) model file."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a detector bundle to ONNX (or OpenVINO) for onnxruntime, without torch",
        description="Export a bundle written by `anomalign fit` to one graph from a "
        "normalised image batch (B, 3, H, W) to score (B,) and map (B, h, w), with the fitted "
        "state as constants and threshold, calibration, preprocessing and provenance in the "
        "model's metadata. `anomalign predict MODEL.onnx` and anomalign.load_detector run it "
        "on onnxruntime. AnoCLIP+ (test-time adaptation) cannot be exported.",
    )
    parser.add_argument("bundle", type=Path, help="detector bundle (.anomalign)")
    parser.add_argument("--format", default="onnx", choices=["onnx", "openvino"])
    parser.add_argument(
        "--out", required=True, type=Path, help="model file (.onnx; OpenVINO: .xml + .bin)"
    )
    parser.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's)")
    parser.add_argument(
        "--dynamic-batch", action="store_true", help="any batch size (default: batch 1)"
    )
    parser.add_argument(
        "--fp16",
        action="store_true",
        help="float16 weights and compute (inputs/outputs stay float32; parity ~1e-3, not 1e-4)",
    )
    parser.add_argument(
        "--image-score",
        choices=["single", "views22"],
        help="AnoCLIP image score (default: the bundle's): one view, or the mean over the 22 "
        "augmented views (22 backbone passes per image)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from anomalign.cli import CommandError
    from anomalign.export import export_detector

    suffix = ".xml" if args.format == "openvino" else ".onnx"
    if args.out.suffix != suffix:
        raise CommandError(f"--format {args.format} writes a '{suffix}' file, not '{args.out}'.")
    if args.opset is not None and not 14 <= args.opset <= 30:
        raise CommandError(f"--opset must be between 14 and 30, got {args.opset}.")
    result = export_detector(
        args.bundle,
        args.out,
        format=args.format,
        opset=args.opset,
        dynamic_batch=args.dynamic_batch,
        fp16=args.fp16,
        image_score=args.image_score,
        log=lambda message: print(f"note: {message}"),
    )
    batch = "dynamic batch" if result.dynamic_batch else "batch 1"
    precision = "float16" if result.fp16 else "float32"
    print(
        f"Exported {result.method} ({result.image_score} image score) to {result.path} "
        f"({result.size_bytes / 1e6:.2f} MB; {result.format}, opset {result.opset}, {batch}, "
        f"{precision}) with {result.exporter} in {result.seconds:.1f} s"
    )
    return 0
