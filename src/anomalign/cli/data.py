"""``anomalign data``: inspect a dataset folder, or write a synthetic one."""

from __future__ import annotations

import argparse
from pathlib import Path

from anomalign.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``data inspect`` and ``data synth``."""
    from anomalign.data.layouts import LAYOUTS
    from anomalign.data.synthetic import DEFAULT_CATEGORIES
    from anomalign.data.synthetic import LAYOUTS as SYNTH_LAYOUTS

    parser = subparsers.add_parser("data", help="inspect datasets or generate a synthetic one")
    commands = parser.add_subparsers(dest="data_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: parser.print_help() or 0)

    inspect = commands.add_parser(
        "inspect", help="show the layout, categories and counts of a dataset folder"
    )
    inspect.add_argument(
        "root",
        nargs="?",
        type=Path,
        help="dataset root (optional only for --layout elpv / conformal-textile)",
    )
    inspect.add_argument(
        "--layout", default="auto", choices=["auto", *LAYOUTS], help="layout (default: detect)"
    )
    inspect.add_argument(
        "--category", action="append", dest="categories", help="only this category (repeatable)"
    )
    inspect.add_argument(
        "--views", help="Real-IAD camera views to keep, comma-separated (e.g. C1,C3)"
    )
    inspect.set_defaults(func=_inspect)

    synth = commands.add_parser("synth", help="write a small seeded synthetic dataset")
    synth.add_argument("out", type=Path, help="folder to create (must be absent or empty)")
    synth.add_argument("--layout", default="mvtec", choices=SYNTH_LAYOUTS)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--categories", nargs="+", default=list(DEFAULT_CATEGORIES))
    synth.add_argument("--image-size", type=int, default=128)
    synth.add_argument("--n-train", type=int, default=8)
    synth.add_argument("--n-test-good", type=int, default=4)
    synth.add_argument("--n-test-defect", type=int, default=6)
    synth.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    synth.set_defaults(func=_synth)


def _inspect(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from anomalign.data.dataset import load_dataset

    if args.root is None and args.layout not in ("elpv", "conformal-textile"):
        raise ConfigError(
            "ROOT is required (it may be left out only with --layout elpv or conformal-textile)."
        )
    options = {}
    if args.views:
        if args.layout not in ("auto", "realiad"):
            raise ConfigError("--views applies to the realiad layout only.")
        options["views"] = [v.strip() for v in args.views.split(",") if v.strip()]
    dataset = load_dataset(args.root, args.layout, args.categories, **options)
    if options and dataset.layout != "realiad":
        raise ConfigError(f"--views applies to the realiad layout, not {dataset.layout}.")
    console = Console(soft_wrap=False, width=max(Console().width, 100))
    how = "auto-detected" if args.layout == "auto" else "given"
    console.print(f"[bold]Root[/bold]: {dataset.root or '(installed data package)'}")
    console.print(f"[bold]Layout[/bold]: {dataset.layout} ({how})")
    console.print(
        f"[bold]Categories[/bold] ({len(dataset.categories)}): {', '.join(dataset.categories)}"
    )
    table = Table(title=f"{len(dataset)} images")
    for column in ("category", "split", "label", "defect type", "images", "with mask"):
        table.add_column(column, justify="right" if column in ("images", "with mask") else "left")
    for row in dataset.summary():
        label = "anomalous" if row.label else "normal"
        table.add_row(
            row.category, row.split, label, row.defect_type, str(row.images), str(row.with_mask)
        )
    console.print(table)
    anomalous = [s for s in dataset if s.label == 1]
    masked = sum(bool(s.mask_paths) for s in anomalous)
    console.print(f"Masks: {masked} of {len(anomalous)} anomalous images have pixel masks.")
    return 0


def _synth(args: argparse.Namespace) -> int:
    from anomalign.data.synthetic import generate_synthetic_dataset

    root = generate_synthetic_dataset(
        args.out,
        layout=args.layout,
        categories=args.categories,
        seed=args.seed,
        image_size=args.image_size,
        n_train=args.n_train,
        n_test_good=args.n_test_good,
        n_test_defect=args.n_test_defect,
        overwrite=args.overwrite,
    )
    print(f"Wrote a synthetic {args.layout} dataset to {root}")
    return 0
