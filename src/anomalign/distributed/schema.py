"""The Parquet table a Ray prediction job writes: one row per image, and how rows are built.

Kept free of Ray so results can be read (and rows built in tests) with pyarrow alone.
Each column is documented in :data:`COLUMNS`, which the README's "Many machines" section
reproduces; :data:`SCHEMA` is the Arrow schema every part file is written with.

The per-image semantics are the local engine's (:mod:`anomalign.inspection.predict_run`):
the map is the method's raw map resized (bilinear) so the image's long side is at most
``max_side`` px, encoded as 16-bit on the detector's calibrated range
(:meth:`Calibration.to_uint16`); the decision is ``score >= threshold``; an image that
cannot be read, or whose score or map is not finite, is an ``error`` row.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image

#: Bumped when a column is added, removed or changes meaning; resuming into a folder
#: written with another version is refused.
SCHEMA_VERSION = 2

#: ``name -> (Arrow type, nullable, meaning)``, in column order.
COLUMNS: dict[str, tuple[pa.DataType, bool, str]] = {
    "input": (
        pa.string(),
        False,
        "the image: absolute local path (file:// URIs are turned into paths), or the URI "
        "as listed (s3://bucket/key, gs://..., hdfs://...)",
    ),
    "content_hash": (
        pa.string(),
        True,
        "SHA-256 (hex) of the file's bytes; null when the file could not be read",
    ),
    "status": (pa.string(), False, '"ok" or "error"'),
    "error": (
        pa.string(),
        True,
        'why the image has no result ("ExceptionType: message"); null when ok',
    ),
    "score": (
        pa.float32(),
        True,
        "image anomaly score (higher = more anomalous), the detector's float32 as is",
    ),
    "decision": (
        pa.string(),
        True,
        '"anomalous" (score >= threshold) or "normal"; null without a threshold',
    ),
    "threshold": (pa.float64(), True, "the decision threshold used; null without one"),
    "confidence": (
        pa.float64(),
        True,
        "confidence in the decision, in [0.5, 1] (Calibration.confidence, as the service "
        "reports it): 0.5 at the threshold, 0.9 one normal score spread away; null without "
        "a threshold or a calibrated score range",
    ),
    "height": (pa.int32(), True, "image height in pixels"),
    "width": (pa.int32(), True, "image width in pixels"),
    "map_png": (
        pa.large_binary(),
        True,
        "the anomaly map as a 16-bit greyscale PNG, long side at most max_side px (aspect "
        "kept): uint16 = round(clip((v - map_low) / (map_high - map_low), 0, 1) * 65535); "
        "null with --no-maps or on error",
    ),
    "map_low": (pa.float64(), True, "map value drawn as 0 (median normal pixel)"),
    "map_high": (pa.float64(), True, "map value drawn as 65535"),
    "detector": (pa.string(), False, "the detector bundle used (path or URI)"),
    "detector_fingerprint": (
        pa.string(),
        False,
        "Detector.fingerprint(): SHA-256 of the fitted state, threshold and calibration",
    ),
    "untrained_backbone": (
        pa.bool_(),
        False,
        "true when the backbone had random weights (scores are not meaningful)",
    ),
    "anomalign_version": (pa.string(), False, "the anomalign version that wrote the row"),
    "predicted_at": (
        pa.timestamp("us", tz="UTC"),
        False,
        "when the row was written; of several rows for one input, the latest is current",
    ),
}

SCHEMA = pa.schema(
    [pa.field(name, kind, nullable=nullable) for name, (kind, nullable, _) in COLUMNS.items()],
    metadata={"anomalign_schema_version": str(SCHEMA_VERSION)},
)


def schema_doc() -> list[dict[str, str]]:
    """The columns as ``[{"name", "type", "meaning"}]`` (written into ``_anomalign.json``)."""
    return [
        {"name": name, "type": str(kind), "nullable": str(nullable).lower(), "meaning": meaning}
        for name, (kind, nullable, meaning) in COLUMNS.items()
    ]


def png16_bytes(encoded: np.ndarray) -> bytes:
    """A uint16 map as PNG bytes, written exactly as the local engine's ``maps/KEY.png``."""
    buffer = io.BytesIO()
    Image.fromarray(encoded).save(buffer, format="PNG")
    return buffer.getvalue()


def decode_map(row: Mapping[str, Any]) -> np.ndarray:
    """A row's map back as float32 values (clipped to ``[map_low, map_high]``)."""
    if row.get("map_png") is None:
        raise ValueError(f"row for {row.get('input')!r} has no map (--no-maps or error)")
    encoded = np.asarray(Image.open(io.BytesIO(row["map_png"])), np.float64)
    low, high = float(row["map_low"]), float(row["map_high"])
    return (low + encoded / 65535.0 * (high - low)).astype(np.float32)


def now() -> datetime:
    """The ``predicted_at`` of rows written now."""
    return datetime.now(UTC)


def empty_table() -> pa.Table:
    """A table with no rows and the full schema."""
    return SCHEMA.empty_table()


def rows_to_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Rows (dicts keyed by column; missing keys are null) as a table with :data:`SCHEMA`."""
    columns = {name: [row.get(name) for row in rows] for name in COLUMNS}
    return pa.Table.from_pydict(columns, schema=SCHEMA)
