"""Aggregate finished units into metrics files and the Markdown report.

Everything here is derived from ``config.json`` and the unit files alone, so the report of
a resumed run equals that of an uninterrupted one (timings aside), and ``write_report`` can
be re-run at any time (``anomalign benchmark --report-only``).

Per (method, shots): the metrics of each seed are averaged over categories with
:func:`anomalign.metrics.summarize`; across seeds the report gives the mean and the sample
standard deviation (n - 1) of the per-category values and of those category means.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anomalign import io
from anomalign.data.fewshot import shots_text
from anomalign.evaluation.anchors import Anchor, load_anchors
from anomalign.evaluation.units import UnitRecord
from anomalign.metrics import CategoryMetrics, ImageMetrics, MetricsReport, PixelMetrics, summarize

#: Every metric stored per category (fractions in [0, 1]).
METRICS: tuple[str, ...] = (
    "image_auroc",
    "image_ap",
    "image_aupr",
    "image_f1_max",
    "pixel_auroc",
    "pixel_ap",
    "pixel_f1_max",
    "pixel_aupro",
)
#: Metrics shown in the Markdown tables, with their column titles.
TABLE_METRICS: tuple[tuple[str, str], ...] = (
    ("image_auroc", "I-AUROC"),
    ("image_ap", "I-AP"),
    ("image_f1_max", "I-F1max"),
    ("pixel_auroc", "P-AUROC"),
    ("pixel_ap", "P-AP"),
    ("pixel_f1_max", "P-F1max"),
    ("pixel_aupro", "AUPRO"),
)
MEAN_ROW = "mean"


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation over seeds (std is None for a single value)."""

    mean: float | None
    std: float | None
    n: int

    @classmethod
    def of(cls, values: Sequence[float | None]) -> Stat:
        present = [v for v in values if v is not None]
        if not present:
            return cls(None, None, 0)
        std = statistics.stdev(present) if len(present) > 1 else None
        return cls(statistics.fmean(present), std, len(present))

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "n": self.n}


@dataclass
class RunSummary:
    """One (method, shots) of the run: its units aggregated over categories and seeds."""

    method: str
    shots: int
    seeds: list[int | None]
    units: list[UnitRecord]
    per_seed: dict[int | None, MetricsReport]
    categories: dict[str, dict[str, Stat]]
    mean: dict[str, Stat]
    expected_units: int

    @property
    def complete(self) -> bool:
        return len(self.units) == self.expected_units

    @property
    def untrained(self) -> bool:
        return any(u.get("untrained_backbone") for u in self.units)

    def to_dict(self) -> dict[str, Any]:
        first = next(iter(self.per_seed.values()), None)
        return {
            "method": self.method,
            "shots": self.shots,
            "seeds": self.seeds,
            "complete": self.complete,
            "units": f"{len(self.units)}/{self.expected_units}",
            "mean": {k: v.to_dict() for k, v in self.mean.items()},
            "categories": {
                c: {k: v.to_dict() for k, v in stats.items()}
                for c, stats in self.categories.items()
            },
            "per_seed_mean": {str(s): r.mean for s, r in self.per_seed.items()},
            "excluded": {str(s): r.excluded for s, r in self.per_seed.items() if r.excluded},
            "variants": {} if first is None else first.variants,
            "timing": timing_summary(self.units),
        }


@dataclass
class BenchmarkReport:
    """The aggregated run and the files written for it."""

    path: Path
    run: dict[str, Any]
    units: list[UnitRecord]
    summaries: list[RunSummary]
    missing: list[str] = field(default_factory=list)


def category_metrics(record: dict[str, Any]) -> CategoryMetrics:
    """Rebuild a unit's :class:`CategoryMetrics` from its stored record."""
    image = record["metrics"]["image"]
    pixel = record["metrics"]["pixel"]
    return CategoryMetrics(
        image=None if image is None else ImageMetrics(**image),
        pixel=None if pixel is None else PixelMetrics(**pixel),
    )


def load_units(out_dir: Path, run: dict[str, Any]) -> tuple[list[UnitRecord], list[str]]:
    """Records of the planned units that are finished, and labels of the missing ones."""
    units, missing = [], []
    for planned in run["plan"]["units"]:
        path = out_dir / planned["file"]
        try:
            record = io.read_json(path)
        except (OSError, json.JSONDecodeError):
            record = None
        if record is None or record.get("hash") != planned["hash"]:
            missing.append(planned["file"])
        else:
            units.append(record)
    return units, missing


def summarize_runs(run: dict[str, Any], units: list[UnitRecord]) -> list[RunSummary]:
    """Aggregate unit records per (method, shots), in the planned order."""
    expected: dict[tuple[str, int], int] = {}
    for planned in run["plan"]["units"]:
        key = (planned["method"], planned["shots"])
        expected[key] = expected.get(key, 0) + 1
    summaries = []
    for method, shots in expected:
        mine = [u for u in units if u["method"] == method and u["shots"] == shots]
        seeds = list(dict.fromkeys(u["seed"] for u in mine))
        per_seed = {
            seed: summarize({u["category"]: category_metrics(u) for u in mine if u["seed"] == seed})
            for seed in seeds
        }
        categories: dict[str, dict[str, Stat]] = {}
        for category in dict.fromkeys(u["category"] for u in mine):
            flats = [category_metrics(u).flat() for u in mine if u["category"] == category]
            categories[category] = {m: Stat.of([f.get(m) for f in flats]) for m in METRICS}
        mean = {m: Stat.of([r.mean.get(m) for r in per_seed.values()]) for m in METRICS}
        summaries.append(
            RunSummary(
                method, shots, seeds, mine, per_seed, categories, mean, expected[(method, shots)]
            )
        )
    return summaries


def timing_summary(units: list[UnitRecord]) -> dict[str, Any]:
    """Fit and inference cost of a set of units: totals, per image, peak memory."""
    if not units:
        return {}
    fit_s = sum(u["fit"]["seconds"] for u in units)
    fit_images = sum(u["fit"]["images"] for u in units)
    inf_s = sum(u["inference"]["seconds"] for u in units)
    inf_images = sum(u["inference"]["images"] for u in units)

    def peak(phase: str) -> int | None:
        values = [u[phase]["peak_bytes"] for u in units if u[phase]["peak_bytes"] is not None]
        return max(values) if values else None

    def increase(phase: str) -> int | None:
        values = [
            u[phase]["peak_bytes"] - u[phase]["start_bytes"]
            for u in units
            if u[phase]["peak_bytes"] is not None and u[phase].get("start_bytes") is not None
        ]
        return max(values) if values else None

    return {
        "fit_seconds_per_category": fit_s / len(units),
        "fit_ms_per_reference_image": 1000 * fit_s / fit_images if fit_images else None,
        "inference_ms_per_image": 1000 * inf_s / inf_images if inf_images else None,
        "fit_peak_bytes": peak("fit"),
        "inference_peak_bytes": peak("inference"),
        "fit_increase_bytes": increase("fit"),
        "inference_increase_bytes": increase("inference"),
        "memory_kind": units[0]["inference"]["memory_kind"],
        "batch_size": units[0]["inference"]["batch_size"],
        "devices": sorted({f"{u['device']} ({u['device_name']})" for u in units}),
        "precision": sorted({u["precision"] for u in units}),
    }


# -- files --------------------------------------------------------------------------------


def _unit_row(u: dict[str, Any]) -> dict[str, Any]:
    row = {
        "method": u["method"],
        "shots": u["shots"],
        "seed": u["seed"],
        "category": u["category"],
        "n_test": u["n_test"],
        "n_anomalous": u["n_anomalous"],
    }
    row.update(category_metrics(u).flat())
    row.update(
        {
            "eval_size": u["eval"]["size"],
            "eval_aspect": u["eval"]["aspect"],
            "fit_seconds": u["fit"]["seconds"],
            "inference_ms_per_image": 1000 * u["inference"]["seconds"] / u["inference"]["images"],
            "fit_peak_bytes": u["fit"]["peak_bytes"],
            "inference_peak_bytes": u["inference"]["peak_bytes"],
            "scores_file": u["files"]["scores"],
        }
    )
    return row


def _write_metric_files(out_dir: Path, units: list[UnitRecord], runs: list[RunSummary]) -> None:
    rows = [_unit_row(u) for u in units]
    header = list(rows[0]) if rows else ["method", "shots", "seed", "category", *METRICS]
    io.write_csv(out_dir / "metrics" / "per_category.csv", header, rows)
    io.write_json(
        out_dir / "metrics" / "per_category.json",
        [
            {**_unit_row(u), "metrics": u["metrics"], "pixel_skipped": u["pixel_skipped"]}
            for u in units
        ],
    )
    summary_header = ["method", "shots", "category", "n_seeds"]
    for m in METRICS:
        summary_header += [m, f"{m}_std"]
    summary_rows = []
    for run in runs:
        for category, stats in [*run.categories.items(), (MEAN_ROW, run.mean)]:
            row: dict[str, Any] = {
                "method": run.method,
                "shots": run.shots,
                "category": category,
                "n_seeds": max((s.n for s in stats.values()), default=0),
            }
            for m in METRICS:
                row[m], row[f"{m}_std"] = stats[m].mean, stats[m].std
            summary_rows.append(row)
    io.write_csv(out_dir / "metrics" / "summary.csv", summary_header, summary_rows)
    io.write_json(out_dir / "metrics" / "summary.json", [r.to_dict() for r in runs])


# -- Markdown -----------------------------------------------------------------------------


def pct(value: float | None) -> str:
    """A fraction as a percentage with one decimal, "–" when undefined."""
    return "–" if value is None else f"{100 * value:.1f}"


def fmt_stat(stat: Stat) -> str:
    """Mean, or "mean ± std", as percentages."""
    if stat.mean is None:
        return "–"
    return pct(stat.mean) if stat.std is None else f"{pct(stat.mean)} ± {100 * stat.std:.1f}"


def fmt_bytes(value: int | None, increase: int | None = None) -> str:
    """Bytes in MiB, with the increase during the phase when known."""
    if value is None:
        return "–"
    text = f"{value / 2**20:.0f} MiB"
    return text if increase is None else f"{text} (+{increase / 2**20:.0f})"


def fmt_published(value: float | None) -> str:
    """A published number with one decimal, or two where the source gives two."""
    if value is None:
        return "–"
    text = f"{value:.2f}"
    return text[:-1] if text.endswith("0") else text


def fmt_ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def _table(
    header: Sequence[str], rows: Sequence[Sequence[str]], right: tuple[int, int] = (1, 99)
) -> list[str]:
    """A Markdown table; columns with index in ``[right[0], right[1])`` are right-aligned."""
    align = ["---:" if right[0] <= i < right[1] else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def _seeds_text(run: RunSummary) -> str:
    if run.seeds == [None]:
        return "–"
    return ",".join(str(s) for s in run.seeds)


def _anchor_row(anchor: Anchor, label: str) -> list[str]:
    cells = [label]
    for metric, _ in TABLE_METRICS:
        cells.append(fmt_published(anchor.metrics.get(metric)))
    mark = " (secondary)" if anchor.secondary and "secondary" not in anchor.source else ""
    extra = f"; {anchor.note}" if anchor.note else ""
    cells.append(f"{anchor.source}{mark}{extra}")
    return cells


def render_markdown(
    run: dict[str, Any], runs: list[RunSummary], missing: list[str], units: list[UnitRecord]
) -> str:
    """The Markdown report."""
    anchors = load_anchors()
    dataset = run["dataset"]
    env = run["environment"]
    config = run["config"]
    backbone = run["backbone"]
    lines = [f"# anomalign benchmark: {dataset['name']}", ""]
    if backbone.get("untrained_backbone") or any(r.untrained for r in runs):
        lines += [
            f"> **WARNING: untrained backbone.** `{backbone['backbone']}` has random weights. "
            "These numbers check the pipeline only and say nothing about the methods.",
            "",
        ]
    if missing:
        lines += [
            f"> **Incomplete run:** {len(missing)} of {len(run['plan']['units'])} units are not "
            "finished; run the same command again to resume. Means below cover finished "
            "units only.",
            "",
        ]
    n_test = sum(dataset["test_images"].values())
    root = dataset["root"] or "(installed package)"
    lines += [
        f"- **Dataset**: {dataset['name']} (layout {dataset['layout']}) at `{root}`; "
        f"{len(dataset['categories'])} categories, {n_test} test images",
        f"- **Backbone**: `{backbone['backbone']}`"
        + (f" (weights `{backbone['weights_path']}`)" if backbone.get("weights_path") else ""),
        f"- **Device**: {env['device']} ({env['device_name']}) · **precision** {env['precision']} "
        f"· torch {env['torch']} · anomalign {run['anomalign_version']}",
        "- **Evaluation**: "
        + "; ".join(f"{m}: maps {_eval_text(info)}" for m, info in run["methods"].items())
        + "; masks resized with nearest neighbour; metrics per category, then the unweighted "
        "mean over categories",
        "- **Metric variants**: "
        + "; ".join(f"{k} {v}" for k, v in run["metric_variants"].items()),
        f"- **Shots** {', '.join(map(shots_text, config['shots']))} · **seeds** "
        f"{', '.join(map(str, config['seeds']))} (mean ± sample std over seeds for few-shot runs)",
    ]
    if config.get("max_test") is not None:
        lines.append(
            f"- **Test subset**: at most {config['max_test']} test images per category "
            "(seeded, label-stratified; `--max-test`), not the full test set"
        )
    for note in run["plan"]["notes"]:
        lines.append(f"- {note}")
    if run.get("command"):
        lines.append(f"- **Command**: `{' '.join(run['command'])}`")
    lines += [
        "- Full configuration (method options, k-shot file lists, seeds, versions): "
        "[config.json](config.json); per-category numbers: "
        "[metrics/per_category.csv](metrics/per_category.csv), "
        "[metrics/summary.csv](metrics/summary.csv); per-image scores: `scores/`",
        "",
    ]

    header = ["Method", "Shots", "Seeds", *(t for _, t in TABLE_METRICS)]
    lines += ["## Comparison (mean over categories, %)", ""]
    rows = [
        [
            _method_label(r),
            shots_text(r.shots),
            _seeds_text(r),
            *(fmt_stat(r.mean[m]) for m, _ in TABLE_METRICS),
        ]
        for r in runs
    ]
    lines += [*_table(header, rows), ""]

    lines += _published_section(
        anchors,
        dataset["name"],
        runs,
        dataset["categories"],
        run["metric_variants"].get("pixel_aupro", "?"),
    )

    for r in runs:
        title = f"## {r.method}, {shots_text(r.shots)}-shot: per category (%)"
        lines += [title, ""]
        if not r.units:
            lines += ["No finished units.", ""]
            continue
        seeds = "" if r.seeds == [None] else f" Mean ± std over seeds {_seeds_text(r)}."
        lines += [f"Evaluated {_eval_text(run['methods'][r.method])}.{seeds}", ""]
        rows = [
            [c, *(fmt_stat(stats[m]) for m, _ in TABLE_METRICS)]
            for c, stats in r.categories.items()
        ]
        rows.append([f"**{MEAN_ROW}**", *(f"**{fmt_stat(r.mean[m])}**" for m, _ in TABLE_METRICS)])
        lines += [*_table(["Category", *(t for _, t in TABLE_METRICS)], rows), ""]
        excluded = {
            f"{metric} ({seed_label(seed)})": cats
            for seed, rep in r.per_seed.items()
            for metric, cats in rep.excluded.items()
        }
        notes = [
            f"- {metric} left out of the mean for "
            + "; ".join(f"{c}: {why}" for c, why in cats.items())
            for metric, cats in excluded.items()
        ]
        notes += list(
            dict.fromkeys(
                f"- pixel metrics not computed for {u['category']}: {u['pixel_skipped']}"
                for u in r.units
                if u["pixel_skipped"]
            )
        )
        lines += [*notes, ""] if notes else []

    lines += _timing_section(anchors, runs)
    lines += _overlay_section(runs)
    return "\n".join(lines).rstrip() + "\n"


def seed_label(seed: int | None) -> str:
    return "no seed" if seed is None else f"seed {seed}"


def _eval_text(info: dict[str, Any]) -> str:
    size = info["eval_size"]
    if info["eval_aspect"] == "squash":
        return f"at {size}×{size} (squashed)"
    return f"with the short side at {size} (aspect kept)"


def _coverage_caveat(dataset: str, categories: Sequence[str]) -> str | None:
    """A warning when the run covers fewer categories than the published means."""
    from anomalign.data import categories as known

    official = {
        "mvtec": known.MVTEC_CATEGORIES,
        "visa": known.VISA_CATEGORIES,
        "mpdd": known.MPDD_CATEGORIES,
        "btad": known.BTAD_CATEGORIES,
    }.get(dataset)
    if official is None or set(official) <= set(categories):
        return None
    covered = len(set(official) & set(categories))
    return (
        f"> Published numbers are means over all {len(official)} {dataset} categories; this "
        f"run covers {covered} of them, so its means are not directly comparable."
    )


def _published_section(
    anchors: Any, dataset: str, runs: list[RunSummary], categories: Sequence[str], aupro: str
) -> list[str]:
    """Each method's published rows above 'this run', then other methods for context."""
    body: list[str] = []
    header = ["Row", *(t for _, t in TABLE_METRICS), "Source"]
    for r in runs:
        published = anchors.for_run(dataset, r.shots, r.method)
        if not published:
            continue
        body += [f"### {r.method}, {shots_text(r.shots)}-shot", ""]
        rows = [_anchor_row(a, f"{a.kind}: {a.method}") for a in published]
        rows.append(["**this run**", *(f"**{fmt_stat(r.mean[m])}**" for m, _ in TABLE_METRICS), ""])
        body += [*_table(header, rows, right=(1, len(header) - 1)), ""]
    ours = tuple(r.method for r in runs)
    for k in dict.fromkeys(r.shots for r in runs):
        context = anchors.context(dataset, k, exclude=ours)
        if not context:
            continue
        body += [f"### Other published methods, {shots_text(k)}-shot on {dataset} (context)", ""]
        rows = [
            _anchor_row(a, a.method + (f" [{a.protocol}]" if a.protocol else "")) for a in context
        ]
        header = ["Method", *(t for _, t in TABLE_METRICS), "Source"]
        body += [*_table(header, rows, right=(1, len(header) - 1)), ""]
    lines = ["## Published numbers beside ours (%)", ""]
    if not body:
        return [*lines, f"No published numbers for '{dataset}' at these shot counts.", ""]
    caveat = _coverage_caveat(dataset, categories)
    if caveat:
        lines += [caveat, ""]
    lines += [
        f"This run's AUPRO is {aupro}; most published PRO values use the papers' "
        "200-threshold AUPRO (`--aupro compat`). 'secondary' marks numbers from third-party "
        "compilations not checked against the original paper.",
        "",
    ]
    if not any(line.startswith("### ") and "(context)" not in line for line in body):
        lines += ["No published numbers for these methods themselves at these shot counts.", ""]
    return lines + body


def _method_label(r: RunSummary) -> str:
    """The method name, with "★ ours" for methods of this project (no published method)."""
    ours = any(u.get("method_info", {}).get("ours") for u in r.units)
    return f"{r.method} ★ ours" if ours else r.method


def _timing_section(anchors: Any, runs: list[RunSummary]) -> list[str]:
    lines = ["## Timing and memory", ""]
    rows = []
    kinds = set()
    for r in runs:
        t = timing_summary(r.units)
        if not t:
            continue
        kinds.add(t["memory_kind"])
        rows.append(
            [
                r.method,
                shots_text(r.shots),
                f"{t['fit_seconds_per_category']:.2f}",
                fmt_ms(t["fit_ms_per_reference_image"]),
                fmt_ms(t["inference_ms_per_image"]),
                fmt_bytes(t["fit_peak_bytes"], t["fit_increase_bytes"]),
                fmt_bytes(t["inference_peak_bytes"], t["inference_increase_bytes"]),
                ", ".join(t["devices"]),
                ", ".join(t["precision"]),
                str(t["batch_size"]),
            ]
        )
    header = [
        "Method",
        "Shots",
        "Fit (s/category)",
        "Fit (ms/ref. image)",
        "Inference (ms/image)",
        "Peak memory, fit",
        "Peak memory, inference",
        "Device",
        "Precision",
        "Batch",
    ]
    lines += [*_table(header, rows, right=(1, 7)), ""]
    lines += [
        "Inference time covers `predict` (image decoding, preprocessing, model, map "
        "resizing), after one warm-up pass of the backbone, not mask loading or metrics; "
        "fit covers `fit` (reference images, or only the text features of a zero-shot "
        f"method). Peak memory: {', '.join(sorted(kinds))}; in brackets the largest increase "
        "during the phase over what was in use when it started (MiB).",
        "",
    ]
    published = [(r.method, s) for r in runs for s in anchors.speed_for(r.method)]
    published = list(dict.fromkeys(published))
    if published:
        rows = [
            [m, s.method, fmt_published(s.ms_per_image), s.setting, s.hardware, s.source]
            for m, s in published
        ]
        lines += ["Published inference times:", ""]
        header = ["Ours", "Published", "ms/image", "Setting", "Hardware", "Source"]
        lines += _table(header, rows, right=(2, 3))
        lines += [""]
    return lines


def _overlay_section(runs: list[RunSummary]) -> list[str]:
    lines: list[str] = []
    for r in runs:
        figures = [(u["category"], u["files"]["overlay"]) for u in r.units if u["files"]["overlay"]]
        if not figures:
            continue
        if not lines:
            lines = [
                "## Overlays",
                "",
                "Anomaly maps on the images with the ground-truth contour (green); one value "
                "range per category (min to max over its maps), shown by the colour bar.",
                "",
            ]
        lines += [f"### {r.method}, {shots_text(r.shots)}-shot", ""]
        lines += [f"![{c}]({path})" for c, path in figures] + [""]
    return lines


def write_report(out_dir: str | Path) -> BenchmarkReport:
    """(Re)write ``metrics/*`` and ``report.md`` from ``config.json`` and the unit files."""
    out = Path(out_dir)
    run = io.read_json(out / "config.json")
    units, missing = load_units(out, run)
    runs = summarize_runs(run, units)
    _write_metric_files(out, units, runs)
    path = io.write_text(out / "report.md", render_markdown(run, runs, missing, units))
    return BenchmarkReport(path, run, units, runs, missing)
