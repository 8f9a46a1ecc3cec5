"""Atomic file writes: a result file is either absent or complete, never half-written.

Every writer goes through a temporary file in the destination folder and ``os.replace``,
which is atomic on POSIX and Windows; an interrupted run leaves no partial result behind.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from anomalign.outdir import file_mode


def _atomic(path: Path, mode: str, write: Callable[[IO[Any]], None]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        kwargs = {"encoding": "utf-8", "newline": ""} if "b" not in mode else {}
        with os.fdopen(handle, mode, **kwargs) as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(tmp, file_mode())  # mkstemp makes 0600; results follow the umask
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return _atomic(Path(path), "w", lambda f: f.write(text))


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON atomically (keys keep their insertion order)."""
    return write_text(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def read_json(path: str | Path) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_csv(
    path: str | Path, header: Sequence[str], rows: Iterable[Mapping[str, Any] | Sequence[Any]]
) -> Path:
    """Write rows (dicts keyed by ``header`` or sequences) as CSV atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        values = [row.get(k) for k in header] if isinstance(row, Mapping) else list(row)
        writer.writerow(["" if v is None else v for v in values])
    return write_text(path, buffer.getvalue())


def read_csv(path: str | Path) -> list[dict[str, str]]:
    """Read a CSV file into dicts (all values as strings)."""
    with Path(path).open(encoding="utf-8", newline="") as stream:
        return list(csv.DictReader(stream))


def write_npz(path: str | Path, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write arrays to a compressed ``.npz`` atomically."""
    return _atomic(Path(path), "wb", lambda f: np.savez_compressed(f, **arrays))
