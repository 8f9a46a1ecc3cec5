"""Benchmarks: run methods over a dataset's categories, shots and seeds, then report.

``run_benchmark(config, out_dir)`` runs (or resumes) every (method, shots, seed, category)
unit and writes per-image scores, per-category metrics (CSV, JSON), the full configuration
and a Markdown report with published numbers beside ours; ``write_report(out_dir)`` rebuilds
the report from the stored units.
"""

from anomalign.evaluation.anchors import Anchor, AnchorTable, load_anchors
from anomalign.evaluation.config import BenchmarkConfig, SyntheticOptions
from anomalign.evaluation.report import BenchmarkReport, RunSummary, Stat, write_report
from anomalign.evaluation.runner import BenchmarkResult, run_benchmark
from anomalign.evaluation.units import PlannedUnit, UnitKey, UnitRecord

__all__ = [
    "Anchor",
    "AnchorTable",
    "BenchmarkConfig",
    "BenchmarkReport",
    "BenchmarkResult",
    "PlannedUnit",
    "RunSummary",
    "Stat",
    "SyntheticOptions",
    "UnitKey",
    "UnitRecord",
    "load_anchors",
    "run_benchmark",
    "write_report",
]
