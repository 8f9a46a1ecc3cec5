"""``anomalign benchmark``: run methods over every category, shots and seeds; write a report."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from anomalign.errors import ConfigError

DEFAULT_BACKBONE = "ViT-B-16-plus-240:laion400m_e32"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``benchmark``."""
    parser = subparsers.add_parser(
        "benchmark",
        help="run methods on a dataset (all categories, shots, seeds) and write a report",
        description=(
            "Run every (method, shots, seed, category) unit, compute the metrics and write "
            "per-image scores, per-category metrics (CSV, JSON), config.json and report.md "
            "into --out. Running the same command again resumes: finished units are reused."
        ),
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--dataset",
        required=True,
        help="mvtec, visa, mpdd, btad, loco, realiad, folder, "
        "elpv, conformal-textile (both from installed packages), auto (detect from --root), "
        "or synthetic (generated, no files needed)",
    )
    data.add_argument("--root", type=Path, help="dataset folder")
    data.add_argument("--categories", help="comma-separated categories (default: all)")
    run = parser.add_argument_group("methods")
    run.add_argument(
        "--method", default="anoclip", help="comma-separated methods, e.g. anoclip,anoclip+"
    )
    run.add_argument(
        "--shots",
        default="0",
        help="comma-separated shot counts; 'full' = every normal training image (default: 0)",
    )
    run.add_argument("--seeds", default="0", help="comma-separated k-shot seeds (default: 0)")
    run.add_argument("--backbone", default=DEFAULT_BACKBONE, help="backbone spec shared by all")
    run.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    run.add_argument("--precision", default="fp32", help="fp32, fp16 or bf16")
    run.add_argument("--preset", help="method preset for every method (default or official)")
    run.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="[METHOD.]KEY=VALUE",
        help="method option, e.g. anoclip.smoothing=gaussian (repeatable)",
    )
    run.add_argument("--batch-size", default="8", help="images per predict call (default: 8)")
    evaluation = parser.add_argument_group("evaluation")
    evaluation.add_argument(
        "--eval-size", help="resize maps and masks to this (default: each method's protocol)"
    )
    evaluation.add_argument(
        "--eval-aspect", default="auto", help="squash, keep (short side) or auto (default)"
    )
    evaluation.add_argument("--aupro", default="mvtec", help="mvtec (default), compat, anomalib")
    evaluation.add_argument(
        "--max-test",
        help="score a seeded, label-stratified subset of at most this many test images per "
        "category (quick runs; default: all)",
    )
    output = parser.add_argument_group("output")
    output.add_argument("--out", type=Path, help="output folder (default: benchmark-<dataset>)")
    output.add_argument("--overlays", default="4", help="overlay examples per category (0: none)")
    output.add_argument("--save-maps", action="store_true", help="also store every anomaly map")
    output.add_argument("--quiet", action="store_true", help="no progress output")
    output.add_argument(
        "--report-only", action="store_true", help="rebuild the report from finished units"
    )
    synth = parser.add_argument_group("synthetic data (--dataset synthetic)")
    synth.add_argument("--synth-layout", default="mvtec", help="mvtec or visa")
    synth.add_argument("--synth-image-size", default="128")
    synth.add_argument("--synth-seed", default="0")
    synth.add_argument(
        "--synth-counts", default="8,4,6", help="TRAIN,TEST_GOOD,TEST_DEFECT images per category"
    )
    parser.set_defaults(func=_benchmark)


def _int(text: str, option: str) -> int:
    from anomalign.evaluation.config import parse_int_list

    values = parse_int_list(text, option)
    if len(values) != 1:
        raise ConfigError(f"{option} takes one integer, got '{text}'.")
    return values[0]


def build_config(args: argparse.Namespace) -> Any:
    """The :class:`BenchmarkConfig` described by the parsed arguments."""
    from anomalign.evaluation.config import (
        BenchmarkConfig,
        SyntheticOptions,
        parse_int_list,
        parse_name_list,
        parse_option,
        parse_shots,
    )

    options: dict[str, dict[str, Any]] = {}
    if args.preset:
        options.setdefault("*", {})["preset"] = args.preset
    for text in args.option:
        method, key, value = parse_option(text)
        options.setdefault(method, {})[key] = value
    counts = parse_int_list(args.synth_counts, "--synth-counts")
    if len(counts) != 3:
        raise ConfigError(f"--synth-counts takes TRAIN,TEST_GOOD,TEST_DEFECT, got '{counts}'.")
    categories = parse_name_list(args.categories, "--categories") if args.categories else None
    synthetic = SyntheticOptions(
        layout=args.synth_layout,
        seed=_int(args.synth_seed, "--synth-seed"),
        image_size=_int(args.synth_image_size, "--synth-image-size"),
        n_train=counts[0],
        n_test_good=counts[1],
        n_test_defect=counts[2],
    )
    config = BenchmarkConfig(
        dataset=args.dataset,
        root=None if args.root is None else str(args.root),
        categories=categories,
        methods=parse_name_list(args.method, "--method"),
        shots=parse_shots(args.shots),
        seeds=parse_int_list(args.seeds, "--seeds"),
        backbone=args.backbone,
        device=args.device,
        precision=args.precision,
        eval_size=None if args.eval_size is None else _int(args.eval_size, "--eval-size"),
        eval_aspect=args.eval_aspect,
        aupro_variant=args.aupro,
        method_options=options,
        batch_size=_int(args.batch_size, "--batch-size"),
        overlays=_int(args.overlays, "--overlays"),
        save_maps=args.save_maps,
        max_test=None if args.max_test is None else _int(args.max_test, "--max-test"),
        synthetic=synthetic,
    )
    if args.synth_layout not in ("mvtec", "visa"):
        raise ConfigError(f"--synth-layout '{args.synth_layout}': expected mvtec or visa.")
    return config.validate()


def command_line(config: Any, out: Path) -> list[str]:
    """A command that reproduces ``config`` (recorded in config.json and the report)."""
    from anomalign.data.fewshot import shots_text

    argv = ["anomalign", "benchmark", "--dataset", config.dataset]
    if config.root is not None:
        argv += ["--root", config.root]
    if config.categories:
        argv += ["--categories", ",".join(config.categories)]
    argv += ["--method", ",".join(config.methods)]
    argv += ["--shots", ",".join(map(shots_text, config.shots))]
    argv += ["--seeds", ",".join(map(str, config.seeds))]
    argv += ["--backbone", config.backbone, "--device", config.device]
    argv += ["--precision", config.precision]
    for method, values in config.method_options.items():
        for key, value in values.items():
            prefix = "" if method == "*" else f"{method}."
            argv += ["--option", f"{prefix}{key}={value}"]
    if config.eval_size is not None:
        argv += ["--eval-size", str(config.eval_size)]
    argv += ["--eval-aspect", config.eval_aspect, "--aupro", config.aupro_variant]
    if config.max_test is not None:
        argv += ["--max-test", str(config.max_test)]
    if config.dataset == "synthetic":
        s = config.synthetic
        argv += ["--synth-layout", s.layout, "--synth-image-size", str(s.image_size)]
        argv += ["--synth-seed", str(s.seed)]
        argv += ["--synth-counts", f"{s.n_train},{s.n_test_good},{s.n_test_defect}"]
    argv += ["--out", str(out)]
    return [shlex.quote(a) for a in argv]


def _benchmark(args: argparse.Namespace) -> int:
    from anomalign.evaluation import run_benchmark, write_report

    out = args.out or Path(f"benchmark-{args.dataset}")
    if args.report_only:
        if not (out / "config.json").is_file():
            raise ConfigError(f"--report-only: '{out}' holds no benchmark run (no config.json).")
        report = write_report(out)
        print(f"Report: {report.path}")
        return 0
    config = build_config(args)
    try:
        result = run_benchmark(
            config, out, progress=False if args.quiet else None, command=command_line(config, out)
        )
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: finished units are kept in '{out}'; run the same command again "
            "to resume.",
            file=sys.stderr,
        )
        return 130
    print(
        f"{len(result.computed)} units computed, {len(result.reused)} reused. "
        f"Report: {result.report_path}"
    )
    return 0
