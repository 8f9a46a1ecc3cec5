"""Read a Ray prediction folder back with pyarrow alone (no Ray needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from anomalign.distributed.schema import SCHEMA


def read_results(
    out: str | Path, *, latest: bool = True, columns: Sequence[str] | None = None
) -> pa.Table:
    """The rows of ``out``'s part files, with :data:`~anomalign.distributed.schema.SCHEMA`.

    ``latest``: one row per input, the most recent (a resumed run appends a new row for
    an image that failed before or whose content changed); False: every row written.
    ``columns``: read only these (``input`` and ``predicted_at`` are added when
    ``latest`` needs them).
    """
    from anomalign.distributed.engine import _Output

    output = _Output(out, create=False)
    wanted = list(columns or SCHEMA.names)
    needed = list(dict.fromkeys([*wanted, "input", "predicted_at"] if latest else wanted))
    table = output.read_parts(output.part_files(), needed)
    if latest and table.num_rows:
        table = table.append_column("_row", pa.array(range(table.num_rows), pa.int64()))
        table = table.sort_by([("predicted_at", "ascending"), ("_row", "ascending")])
        table = table.append_column("_order", pa.array(range(table.num_rows), pa.int64()))
        last = table.group_by("input").aggregate([("_order", "max")])["_order_max"]
        table = table.take(sorted(last.to_pylist()))
        table = table.drop_columns(["_row", "_order"])
    return table.select(wanted)
