"""Print the README's real-weights table from finished benchmark folders.

For each run folder (``anomalign benchmark ... --out DIR``): per category and shot count,
image AUROC / AP / F1-max as mean ± sample std over seeds, from the unit files; for the
textile set also the AUROC of each defect type (local, global) against the normal test
images, from the per-image scores.

    python benchmarks/real_weights_table.py build/real/elpv build/real/conformal-textile
"""

from __future__ import annotations

import csv
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from anomalign.data.fewshot import shots_text
from anomalign.metrics import image_metrics


def fmt(values: list[float]) -> str:
    mean = 100 * statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.1f}"
    return f"{mean:.1f} ± {100 * statistics.stdev(values):.1f}"


def defect_aurocs(run: Path, record: dict) -> dict[str, float]:
    import numpy as np

    rows = list(csv.DictReader((run / record["files"]["scores"]).open()))
    normal = [float(r["score"]) for r in rows if r["label"] == "0"]
    out = {}
    for kind in sorted({r["defect_type"] for r in rows if r["label"] == "1"}):
        scores = [float(r["score"]) for r in rows if r["defect_type"] == kind]
        labels = np.array([0] * len(normal) + [1] * len(scores))
        out[kind] = image_metrics(labels, np.array(normal + scores)).auroc
    return out


def table(run: Path) -> list[str]:
    config = json.loads((run / "config.json").read_text())
    groups: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for path in sorted((run / "units").rglob("*.json")):
        record = json.loads(path.read_text())
        groups[(record["category"], record["shots"])].append(record)
    kinds: set[str] = set()
    rows = []
    for (category, shots), records in sorted(
        groups.items(), key=lambda x: (x[0][0], x[0][1] % 10**6)
    ):
        image = [r["metrics"]["image"] for r in records]
        per_kind: dict[str, list[float]] = defaultdict(list)
        for r in records:
            for kind, value in defect_aurocs(run, r).items():
                per_kind[kind].append(value)
        if len(per_kind) > 1:
            kinds |= set(per_kind)
        memory = sorted({r["method_info"].get("memory_size") for r in records})
        rows.append((category, shots, records, image, per_kind, memory))
    kinds_sorted = sorted(kinds)
    head = ["category", "shots", "seeds", "test (anomalous)", "memory rows", "I-AUROC", "I-AP",
            "I-F1max", *(f"I-AUROC {k}" for k in kinds_sorted)]  # fmt: skip
    lines = [f"**{config['dataset']['name']}**", "", "| " + " | ".join(head) + " |",
             "|" + "---|" * len(head)]  # fmt: skip
    for category, shots, records, image, per_kind, memory in rows:
        cells = [
            category,
            shots_text(shots),
            str(len(records)),
            f"{records[0]['n_test']} ({records[0]['n_anomalous']})",
            "/".join(str(m) for m in memory),
            fmt([m["auroc"] for m in image]),
            fmt([m["ap"] for m in image]),
            fmt([m["f1_max"] for m in image]),
            *(fmt(per_kind[k]) for k in kinds_sorted),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    ms = [
        1000 * r["inference"]["seconds"] / r["inference"]["images"]
        for g in groups.values()
        for r in g
    ]
    device = config["environment"]["device_name"]
    command = " ".join(config["command"] or [])
    lines += ["", f"Command: `{command}`; median {statistics.median(ms):.0f} ms/image on {device}."]
    return lines


if __name__ == "__main__":
    for folder in sys.argv[1:]:
        print("\n".join(table(Path(folder))), end="\n\n")
