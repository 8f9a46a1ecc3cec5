"""``anomalign captions``: list, show, validate and build FineGrainedAD's MFSC captions."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    from anomalign.prompts.captions.store import SHIPPED_DATASETS

    parser = subparsers.add_parser(
        "captions",
        help="list, show, validate and build multi-level captions (FineGrainedAD)",
        description="Multi-level fine-grained semantic captions (MFSC) used by FineGrainedAD: "
        "the shipped MVTec AD and VisA captions, and a builder for your own parts.",
    )
    actions = parser.add_subparsers(dest="captions_command", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="list the shipped captions")
    listing.add_argument("--dataset", choices=SHIPPED_DATASETS, help="only this dataset")
    listing.set_defaults(func=run_list)

    show = actions.add_parser("show", help="print a caption (shipped name or JSON file)")
    show.add_argument("name", metavar="NAME", help="shipped category (e.g. bottle) or a file")
    show.add_argument("--json", action="store_true", help="print the JSON instead of a tree")
    show.set_defaults(func=run_show)

    validate = actions.add_parser("validate", help="check caption files against the schema")
    validate.add_argument("files", nargs="+", metavar="FILE", help="caption JSON files")
    validate.add_argument("--strict", action="store_true", help="also fail on consistency warnings")
    validate.set_defaults(func=run_validate)

    vocab = actions.add_parser(
        "vocab", help="show the attribute vocabularies derived from all shipped captions"
    )
    vocab.add_argument("extra", nargs="*", metavar="FILE", help="also include these captions")
    vocab.set_defaults(func=run_vocab)

    importing = actions.add_parser(
        "import",
        help="convert a copy of the official fine_grained_prompts.py into caption files",
        description="Read a user's copy of the official FineGrainedAD caption file "
        "(PromptAD/fine_grained_prompts.py) as data: it is parsed, never imported or run, "
        "and anything but literal assignments is refused. Writes one caption JSON per "
        "category and vocabulary.json (the official attribute lists, for fit's "
        "vocabulary= override).",
    )
    importing.add_argument("file", metavar="PATH", help="the official-format .py file")
    importing.add_argument("--out", required=True, metavar="DIR", help="folder to write")
    importing.add_argument(
        "--version", default="v3", help="caption table suffix (default v3, what the model uses)"
    )
    importing.add_argument("--force", action="store_true", help="overwrite existing files")
    importing.set_defaults(func=run_import)

    build = actions.add_parser(
        "build",
        help="ask a multimodal LLM for a caption of one normal image",
        description="Send one normal image to an OpenAI-compatible chat-completions server "
        "(hosted API, vLLM, Ollama, ...), validate the reply, retry on invalid output, and "
        "write the caption file only once it is valid.",
    )
    build.add_argument("--image", required=True, help="a normal (defect-free) image")
    build.add_argument("--category", required=True, help="category name stored in the caption")
    build.add_argument("--out", required=True, help="caption JSON file to write")
    build.add_argument(
        "--base-url",
        help="API root, e.g. http://localhost:11434/v1 "
        "(default: $ANOMALIGN_LLM_BASE_URL or $OPENAI_BASE_URL)",
    )
    build.add_argument("--model", help="model name (default: $ANOMALIGN_LLM_MODEL)")
    build.add_argument(
        "--api-key", help="API key (default: $ANOMALIGN_LLM_API_KEY or $OPENAI_API_KEY)"
    )
    build.add_argument(
        "--retries", type=int, default=None, help="extra attempts on invalid output (default 2)"
    )
    build.add_argument(
        "--timeout", type=float, default=None, help="seconds to wait for the server (default 120)"
    )
    build.add_argument(
        "--defect",
        action="append",
        dest="defects",
        metavar="PHRASE",
        help="defect phrase with {} for the object, e.g. '{} with a crack' (repeatable; "
        "replaces the model's proposals)",
    )
    build.add_argument(
        "--no-json-mode", action="store_true", help="do not send response_format=json_object"
    )
    build.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    build.set_defaults(func=run_build)


def _console():  # rich is imported lazily to keep --help fast
    from rich.console import Console

    return Console()


def run_list(args: argparse.Namespace) -> int:
    from rich.table import Table

    from anomalign.prompts.captions import (
        caption_hash,
        list_shipped,
        load_shipped,
        shipped_dataset,
    )

    table = Table(title="Shipped captions")
    for column in ("dataset", "category", "foreground", "entities", "defects", "hash"):
        table.add_column(column)
    for name in list_shipped(args.dataset):
        caption = load_shipped(name)
        table.add_row(
            shipped_dataset(name),
            name,
            caption.foreground,
            ", ".join(caption.level2.entities),
            str(len(caption.defects)),
            caption_hash(caption)[:12],
        )
    _console().print(table)
    return 0


def run_show(args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.tree import Tree

    from anomalign.prompts.captions import caption_hash, resolve_caption

    caption = resolve_caption(args.name)
    if args.json:
        sys.stdout.write(caption.to_json())
        return 0
    title = caption.category or args.name
    tree = Tree(f"[bold]{escape(title)}[/bold]  [dim]sha256 {caption_hash(caption)[:12]}[/dim]")
    level1 = tree.add("[bold]Level 1[/bold] image")
    level1.add(f"foreground: {escape(caption.foreground)}")
    level1.add(f"background: {escape(caption.background)}")
    level2 = tree.add("[bold]Level 2 / 3[/bold] components")
    l2, l3 = caption.level2, caption.level3
    for i, entity in enumerate(l2.entities):
        node = level2.add(
            f"[cyan]{escape(entity)}[/cyan] × {escape(l2.numbers[i])} @ {escape(l2.locations[i])}"
        )
        if not caption.generic:
            node.add(
                f"direction {escape(l3.directions[i])} · colour {escape(l3.colors[i])} · "
                f"texture {escape(l3.textures[i])} · shape {escape(l3.shapes[i])}"
            )
        node.add(f"[italic]{escape(l3.entity_captions[i])}[/italic]")
    level2.add(f"relation: {escape(l2.relation)}")
    tree.add(f"[bold]caption[/bold] {escape(caption.caption)}")
    defects = tree.add("[bold]defects[/bold]")
    for phrase in caption.defects:
        defects.add(escape(phrase.format(caption.foreground)))
    _console().print(tree)
    return 0


def run_validate(args: argparse.Namespace) -> int:
    from anomalign.cli import CommandError
    from anomalign.prompts.captions import CaptionError, consistency_warnings, load_caption_file

    failed = 0
    for file in args.files:
        try:
            caption = load_caption_file(file)
        except CaptionError as error:
            failed += 1
            print(f"INVALID {error}")
            continue
        warnings = consistency_warnings(caption)
        status = "ok" if not warnings else ("INVALID" if args.strict else "ok (with warnings)")
        failed += bool(warnings and args.strict)
        print(f"{status} {file}: {caption.num_entities} entities, {len(caption.defects)} defects")
        for warning in warnings:
            print(f"  warning: {warning}")
    if failed:
        raise CommandError(f"{failed} of {len(args.files)} caption file(s) failed validation.")
    return 0


def run_vocab(args: argparse.Namespace) -> int:
    from anomalign.prompts.captions import (
        derive_vocabularies,
        list_shipped,
        load_caption_file,
        load_shipped,
    )

    captions = [load_shipped(name) for name in list_shipped()]
    captions += [load_caption_file(file) for file in args.extra]
    for name, values in derive_vocabularies(captions).as_dict().items():
        print(f"{name} ({len(values)}): {', '.join(values)}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from pathlib import Path

    from anomalign.cli import CommandError
    from anomalign.io import write_json, write_text
    from anomalign.prompts.captions.official_file import import_official

    result = import_official(args.file, version=args.version)
    for problem in result.problems:
        print(f"skipped {problem}", file=sys.stderr)
    if not result.captions:
        raise CommandError(f"{args.file}: no valid caption found.")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    targets = {f"{name}.json": caption for name, caption in result.captions.items()}
    existing = sorted(n for n in [*targets, "vocabulary.json"] if (out / n).exists())
    if existing and not args.force:
        raise CommandError(f"{out} already has {', '.join(existing)}; pass --force to overwrite.")
    for name, caption in targets.items():
        write_text(out / name, caption.to_json())
    if result.vocabulary:
        write_json(out / "vocabulary.json", result.vocabulary)
    print(
        f"wrote {len(targets)} caption(s)"
        + (" and vocabulary.json" if result.vocabulary else "")
        + f" to {out}"
        + (f"; skipped {len(result.problems)}" if result.problems else "")
    )
    return 0


def run_build(args: argparse.Namespace) -> int:
    from anomalign.prompts.captions import LLMSettings, build_caption_file, normalize_category
    from anomalign.prompts.captions.schema import check_defect_phrases

    settings = LLMSettings.resolve(
        base_url=args.base_url,
        model=args.model,
        api_key=args.api_key,
        timeout=args.timeout,
        retries=args.retries,
        json_mode=not args.no_json_mode,
    )
    if args.defects:  # fail on a bad phrase before spending an LLM call
        check_defect_phrases(args.defects, source="--defect")

    def report(attempt: int, problem: str | None) -> None:
        if problem is not None:
            print(f"attempt {attempt}: {problem}", file=sys.stderr)

    result = build_caption_file(
        args.image,
        normalize_category(args.category),
        args.out,
        settings,
        defects=args.defects,
        overwrite=args.force,
        on_attempt=report,
    )
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(
        f"wrote {args.out}: {result.caption.num_entities} entities, "
        f"{len(result.caption.defects)} defects ({result.attempts} attempt(s))"
    )
    return 0
