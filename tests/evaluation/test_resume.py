"""Interrupting a benchmark and running it again: finished units are reused, never redone."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import anomalign.evaluation.runner as runner
from anomalign.backbones import Backbone
from anomalign.evaluation import BenchmarkConfig, run_benchmark
from anomalign.io import read_json

METRIC_FIELDS = ("method", "shots", "seed", "category", "n_test", "metrics", "pixel_skipped")


class Interrupt:
    """``on_unit_done`` hook that presses Ctrl-C after ``after`` units."""

    def __init__(self, after: int) -> None:
        self.after, self.seen = after, 0

    def __call__(self, key: Any, record: Any) -> None:
        self.seen += 1
        if self.seen >= self.after:
            raise KeyboardInterrupt


@pytest.fixture
def fit_calls(monkeypatch: pytest.MonkeyPatch) -> Counter:
    """Counts ``fit`` calls per (method, category) of detectors the runner creates."""
    calls: Counter = Counter()
    original = runner.create_detector

    def spying_create(name: str, **kwargs: Any) -> Any:
        detector = original(name, **kwargs)
        fit = detector.fit

        def counted_fit(*args: Any, **kw: Any) -> Any:
            calls[(name, kw.get("category"))] += 1
            return fit(*args, **kw)

        detector.fit = counted_fit
        return detector

    monkeypatch.setattr(runner, "create_detector", spying_create)
    return calls


def _metrics(out: Path) -> list[dict[str, Any]]:
    rows = read_json(out / "metrics" / "per_category.json")
    return [{k: r[k] for k in METRIC_FIELDS} for r in rows]


def test_interrupted_run_resumes_without_recomputing(
    small_config: BenchmarkConfig, tiny_backbone: Backbone, tmp_path: Path, fit_calls: Counter
) -> None:
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(
            small_config, out, backbone=tiny_backbone, progress=False, on_unit_done=Interrupt(1)
        )
    finished = sorted(out.glob("units/**/*.json"))
    assert [p.relative_to(out).as_posix() for p in finished] == [
        "units/anoclip/k0/no-seed/synth_texture.json"
    ]
    first_mtime = finished[0].stat().st_mtime_ns
    assert fit_calls == Counter({("anoclip", "synth_texture"): 1})

    fit_calls.clear()
    result = run_benchmark(small_config, out, backbone=tiny_backbone, progress=False)
    assert [k.category for k in result.reused] == ["synth_texture"]
    assert len(result.computed) == 3
    assert ("anoclip", "synth_texture") not in fit_calls, "a finished unit was recomputed"
    assert sum(fit_calls.values()) == 3
    assert finished[0].stat().st_mtime_ns == first_mtime

    fit_calls.clear()
    again = run_benchmark(small_config, out, backbone=tiny_backbone, progress=False)
    assert not again.computed and len(again.reused) == 4 and not fit_calls

    reference = tmp_path / "uninterrupted"
    run_benchmark(small_config, reference, backbone=tiny_backbone, progress=False)
    assert _metrics(out) == _metrics(reference)
    strip = lambda text: text.split("## Timing and memory")[0].replace(str(out), "")  # noqa: E731
    assert strip((out / "report.md").read_text()) == strip(
        (reference / "report.md").read_text().replace(str(reference), "")
    )


def test_interrupt_inside_a_unit_leaves_no_partial_result(
    small_config: BenchmarkConfig,
    tiny_backbone: Backbone,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = runner.create_detector
    created: list[str] = []

    def crashing_create(name: str, **kwargs: Any) -> Any:
        detector = original(name, **kwargs)
        created.append(name)
        if len(created) == 2:  # the second unit's detector

            def crash(*args: Any, **kw: Any) -> Any:
                raise RuntimeError("simulated crash during predict")

            detector.predict = crash
        return detector

    monkeypatch.setattr(runner, "create_detector", crashing_create)
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_benchmark(small_config, out, backbone=tiny_backbone, progress=False)
    assert len(list(out.glob("units/**/*.json"))) == 1
    assert not list(out.glob("scores/anoclip/k0/no-seed/synth_object.*"))
    assert not list(out.rglob("*.tmp"))

    monkeypatch.setattr(runner, "create_detector", original)
    result = run_benchmark(small_config, out, backbone=tiny_backbone, progress=False)
    assert len(result.reused) == 1 and len(result.computed) == 3


def test_changed_settings_invalidate_finished_units(
    small_config: BenchmarkConfig, tiny_backbone: Backbone, tmp_path: Path
) -> None:
    config = small_config.with_changes(methods=("anoclip",), method_options={})
    config = config.with_changes(method_options={"anoclip": {"image_score": "single"}})
    first = run_benchmark(config, tmp_path, backbone=tiny_backbone, progress=False)
    assert len(first.computed) == 2
    changed = config.with_changes(eval_size=48)
    second = run_benchmark(changed, tmp_path, backbone=tiny_backbone, progress=False)
    assert len(second.computed) == 2 and not second.reused
    assert all(u["eval"]["size"] == 48 for u in second.units)
    # Removing an artefact the run needs (the overlay) recomputes that unit only.
    (tmp_path / second.units[0]["files"]["overlay"]).unlink()
    third = run_benchmark(changed, tmp_path, backbone=tiny_backbone, progress=False)
    assert len(third.computed) == 1 and len(third.reused) == 1
