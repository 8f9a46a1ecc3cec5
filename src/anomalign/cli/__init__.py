"""The ``anomalign`` command line.

Each sub-command lives in its own module under ``anomalign.cli`` and exposes
``register(subparsers)``; adding a command is adding a module and one name to
:data:`COMMAND_MODULES`. Heavy imports (torch, open_clip) happen inside handlers so
that ``anomalign --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from anomalign import __version__
from anomalign.errors import AnomalignError

#: Sub-command modules, in the order ``--help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "info",
    "data",
    "captions",
    "benchmark",
    "fit",
    "predict",
    "serve",
    "export",
    "demo",
)


class CommandError(AnomalignError):
    """A usage error found by a command handler."""


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every registered sub-command."""
    parser = argparse.ArgumentParser(
        prog="anomalign",
        description="Zero- and few-shot visual anomaly detection with vision-language models.",
    )
    parser.add_argument("--version", action="version", version=f"anomalign {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"anomalign.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``anomalign`` script; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except AnomalignError as error:
        print(f"anomalign {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
