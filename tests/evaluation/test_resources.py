"""Timing and peak memory per phase, on the CPU and (mocked) CUDA paths; Ctrl-C in the CLI."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import torch

import anomalign.evaluation as evaluation
from anomalign.cli import main
from anomalign.evaluation.resources import ResourceMeter


def test_cpu_phase_records_time_and_peak_rss() -> None:
    meter = ResourceMeter("cpu")
    with meter.phase() as usage:
        block = bytearray(64 * 2**20)
        block[::4096] = b"x" * len(block[::4096])
        time.sleep(0.01)
    assert usage.seconds >= 0.01 and usage.memory_kind.startswith("process peak RSS")
    assert usage.peak_bytes is not None and usage.peak_bytes > 0
    if "reset per phase" in usage.memory_kind:
        assert usage.peak_bytes - usage.start_bytes >= 60 * 2**20
    del block


def test_timed_sections_only_count_when_asked() -> None:
    meter = ResourceMeter("cpu")
    with meter.phase(time_whole=False) as usage:
        time.sleep(0.02)
        with meter.timed(usage):
            time.sleep(0.01)
    assert 0.01 <= usage.seconds < 0.02


def test_cuda_phase_uses_the_allocator_statistics(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, Any]] = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda d=None: calls.append(("sync", d)))
    monkeypatch.setattr(
        torch.cuda, "reset_peak_memory_stats", lambda d=None: calls.append(("reset", d))
    )
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda d=None: 100)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda d=None: 250)
    with ResourceMeter("cuda:0").phase() as usage:
        pass
    assert (usage.start_bytes, usage.peak_bytes) == (100, 250)
    assert usage.memory_kind == "cuda max_memory_allocated"
    assert ("reset", "cuda:0") in calls and calls.count(("sync", "cuda:0")) == 2


def test_cli_reports_an_interrupt_and_how_to_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluation, "run_benchmark", interrupted)
    argv = ["benchmark", "--dataset", "synthetic", "--out", str(tmp_path), "--quiet"]
    assert main(argv) == 130
    assert "run the same command again to resume" in capsys.readouterr().err
