"""Progress display for benchmark runs: live bars in a terminal, one line per unit in logs.

``make_progress(None)`` picks the mode: bars when stderr is a terminal and ``CI`` is not
set, plain lines otherwise; ``make_progress(False)`` is silent. Bars go to stderr, so the
report summary printed on stdout stays clean.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Protocol


class ProgressReporter(Protocol):
    """What the runner tells the user while it works."""

    def start(self, total_units: int, skipped: int) -> None: ...

    def start_unit(self, index: int, label: str, images: int) -> None: ...

    def advance(self, images: int) -> None: ...

    def finish_unit(self, index: int, label: str, summary: str) -> None: ...

    def close(self) -> None: ...


class SilentProgress:
    """Says nothing (``--quiet``)."""

    def start(self, total_units: int, skipped: int) -> None:
        pass

    def start_unit(self, index: int, label: str, images: int) -> None:
        pass

    def advance(self, images: int) -> None:
        pass

    def finish_unit(self, index: int, label: str, summary: str) -> None:
        pass

    def close(self) -> None:
        pass


class LineProgress(SilentProgress):
    """One line per finished unit on stderr: readable in CI logs, no control characters."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream
        self.total = 0

    def _print(self, text: str) -> None:
        print(text, file=self.stream or sys.stderr, flush=True)

    def start(self, total_units: int, skipped: int) -> None:
        self.total = total_units
        resumed = f" ({skipped} already finished, resuming)" if skipped else ""
        self._print(f"benchmark: {total_units} units{resumed}")

    def finish_unit(self, index: int, label: str, summary: str) -> None:
        self._print(f"[{index}/{self.total}] {label}: {summary}")


class RichProgress(SilentProgress):
    """Two live bars: units (method, shots, seed, category) and images of the current unit."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = Console(stderr=True)
        self.bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.units: Any = None
        self.images: Any = None

    def start(self, total_units: int, skipped: int) -> None:
        self.bars.start()
        self.units = self.bars.add_task("units", total=total_units, completed=skipped)
        self.images = self.bars.add_task("images", total=0, visible=False)

    def start_unit(self, index: int, label: str, images: int) -> None:
        self.bars.update(self.units, description=f"units · {label}")
        self.bars.reset(self.images, total=images, visible=True, description="  images")

    def advance(self, images: int) -> None:
        self.bars.advance(self.images, images)

    def finish_unit(self, index: int, label: str, summary: str) -> None:
        self.bars.advance(self.units, 1)
        self.console.print(f"{label}: {summary}", highlight=False)

    def close(self) -> None:
        self.bars.stop()


def progress_is_interactive(stream: Any = None) -> bool:
    """True when live bars make sense: a terminal, and not running under CI."""
    stream = stream or sys.stderr
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false"):
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


def make_progress(mode: bool | ProgressReporter | None = None) -> ProgressReporter:
    """``None``: bars in a terminal, lines in logs; ``True``: bars; ``False``: silent.

    A ready :class:`ProgressReporter` is returned as is.
    """
    if mode is None:
        return RichProgress() if progress_is_interactive() else LineProgress()
    if mode is True:
        return RichProgress()
    if mode is False:
        return SilentProgress()
    return mode
