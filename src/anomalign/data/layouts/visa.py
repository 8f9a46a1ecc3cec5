"""VisA, read through its official 1-class split ``split_csv/1cls.csv``.

The CSV (header ``object,split,label,image,mask``) lists paths relative to the VisA
root; ``label`` is ``normal`` or ``anomaly`` and ``mask`` is empty for normal rows. The
images are upper-case ``.JPG``; masks hold defect ids and are binarised with ``!= 0``
(what :func:`anomalign.data.images.load_mask` does). The defect type of an anomalous
image is ``anomaly``: the split file carries no finer type.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

from anomalign.data.layouts._common import require_dir, select_categories
from anomalign.data.sample import NORMAL_DEFECT_TYPE, Sample
from anomalign.errors import DataError

NAME = "visa"
SPLIT_CSV = Path("split_csv") / "1cls.csv"
HEADER: tuple[str, ...] = ("object", "split", "label", "image", "mask")
ANOMALY_DEFECT_TYPE = "anomaly"


def _csv_path(root: Path, split_csv: str | Path | None) -> Path:
    path = root / (split_csv or SPLIT_CSV)
    if not path.is_file():
        raise DataError(
            f"VisA split file '{path}' does not exist; expected the official "
            f"'{SPLIT_CSV.as_posix()}' (a copy of spot-diff's split_csv/1cls.csv) under '{root}'."
        )
    return path


def _read_rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    """``(line number, row)`` pairs of a split CSV whose header is checked."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = tuple(cell.strip() for cell in next(reader, ()))
        if header != HEADER:
            raise DataError(
                f"VisA split file '{path}' has the header {','.join(header) or '(empty)'}; "
                f"expected {','.join(HEADER)}."
            )
        rows = []
        for number, cells in enumerate(reader, start=2):
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) != len(HEADER):
                raise DataError(
                    f"Line {number} of '{path}' has {len(cells)} fields; expected {len(HEADER)} "
                    f"({','.join(HEADER)})."
                )
            rows.append((number, {k: c.strip() for k, c in zip(HEADER, cells, strict=True)}))
    return rows


def categories(root: str | Path, split_csv: str | Path | None = None) -> list[str]:
    """Objects named in the split file, in order of first appearance."""
    root = require_dir(Path(root), "a VisA root holding split_csv/1cls.csv")
    rows = _read_rows(_csv_path(root, split_csv))
    return list(dict.fromkeys(row["object"] for _, row in rows))


def detect(root: Path) -> bool:
    """True when ``root/split_csv/1cls.csv`` exists."""
    return (root / SPLIT_CSV).is_file()


def _row_to_sample(root: Path, row: dict[str, str], csv_path: Path, line: int) -> Sample:
    where = f"line {line} of '{csv_path}'"
    if row["split"] not in ("train", "test"):
        raise DataError(f"{where}: split '{row['split']}'; expected 'train' or 'test'.")
    if row["label"] not in ("normal", "anomaly"):
        raise DataError(f"{where}: label '{row['label']}'; expected 'normal' or 'anomaly'.")
    image = root / row["image"]
    if not image.is_file():
        raise DataError(f"Image '{image}' listed on {where} does not exist.")
    if row["label"] == "normal":
        return Sample(image, row["object"], row["split"], 0, NORMAL_DEFECT_TYPE)  # type: ignore[arg-type]
    if not row["mask"]:
        raise DataError(
            f"Anomalous image '{image}' on {where} has no mask; expected a path in the "
            "'mask' column."
        )
    mask = root / row["mask"]
    if not mask.is_file():
        raise DataError(f"Mask '{mask}' of image '{image}' on {where} does not exist.")
    return Sample(image, row["object"], row["split"], 1, ANOMALY_DEFECT_TYPE, (mask,))  # type: ignore[arg-type]


def load_visa(
    root: str | Path,
    categories: Iterable[str] | None = None,
    *,
    split_csv: str | Path | None = None,
) -> list[Sample]:
    """Read VisA from its split CSV (default ``split_csv/1cls.csv`` under ``root``)."""
    root = require_dir(Path(root), "a VisA root holding split_csv/1cls.csv")
    csv_path = _csv_path(root, split_csv)
    rows = _read_rows(csv_path)
    available = list(dict.fromkeys(row["object"] for _, row in rows))
    chosen = set(select_categories(available, categories, root, NAME))
    return [
        _row_to_sample(root, row, csv_path, line) for line, row in rows if row["object"] in chosen
    ]


load = load_visa
