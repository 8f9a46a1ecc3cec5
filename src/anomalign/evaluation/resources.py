"""Wall time and peak memory of one phase (fit or inference) of a benchmark unit.

On CUDA the peak is ``torch.cuda.max_memory_allocated`` (reset before each phase). On the
CPU it is the process's peak resident set size: on Linux the peak (``VmHWM``) is reset
before each phase through ``/proc/self/clear_refs``, so fit and inference are measured
apart; elsewhere ``resource.getrusage`` gives the peak since the process started, and the
report says so.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


@dataclass
class PhaseUsage:
    """What one phase cost: seconds, peak bytes and the bytes in use when it started
    (so the phase's own increase is ``peak_bytes - start_bytes``), and how they were measured."""

    seconds: float = 0.0
    peak_bytes: int | None = None
    start_bytes: int | None = None
    memory_kind: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "seconds": self.seconds,
            "peak_bytes": self.peak_bytes,
            "start_bytes": self.start_bytes,
            "memory_kind": self.memory_kind,
        }


def _vm_hwm_bytes() -> int | None:
    try:
        match = re.search(r"VmHWM:\s+(\d+)\s+kB", _STATUS.read_text())
    except OSError:
        return None
    return int(match.group(1)) * 1024 if match else None


def _reset_vm_hwm() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def _ru_maxrss_bytes() -> int | None:
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


class ResourceMeter:
    """Measures phases on ``device`` (a torch device string such as "cpu" or "cuda:0")."""

    def __init__(self, device: str) -> None:
        self.device = str(device)
        self.cuda = self.device.startswith("cuda")

    def _synchronize(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize(self.device)

    @contextmanager
    def timed(self, usage: PhaseUsage) -> Iterator[None]:
        """Add the ``with`` block's wall time to ``usage.seconds``."""
        self._synchronize()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._synchronize()
            usage.seconds += time.perf_counter() - start

    @contextmanager
    def phase(self, time_whole: bool = True) -> Iterator[PhaseUsage]:
        """Record the peak memory of the ``with`` block into the yielded usage.

        With ``time_whole`` the block's wall time is its ``seconds``; otherwise only the
        sections wrapped in :meth:`timed` count (e.g. predict calls, not mask loading).
        """
        usage = PhaseUsage()
        self._synchronize()
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats(self.device)
            usage.memory_kind = "cuda max_memory_allocated"
            usage.start_bytes = int(torch.cuda.memory_allocated(self.device))
        elif _reset_vm_hwm():
            usage.memory_kind = "process peak RSS (VmHWM, reset per phase)"
            usage.start_bytes = _vm_hwm_bytes()
        else:
            usage.memory_kind = "process peak RSS since start (ru_maxrss)"
        start = time.perf_counter()
        try:
            yield usage
        finally:
            self._synchronize()
            if time_whole:
                usage.seconds += time.perf_counter() - start
            if self.cuda:
                import torch

                usage.peak_bytes = int(torch.cuda.max_memory_allocated(self.device))
            elif usage.memory_kind.startswith("process peak RSS (VmHWM"):
                usage.peak_bytes = _vm_hwm_bytes()
            else:
                usage.peak_bytes = _ru_maxrss_bytes()
