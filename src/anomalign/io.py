"""Atomic file writes: a file we write is either absent or complete, never half-written.

Every writer goes through a temporary file in the destination folder, is flushed to disk,
then renamed over the target with ``os.replace`` (atomic on POSIX and Windows). This is
the one helper for that chore; bundles, reports, maps, captions and predict outputs all
use it. JSON is written strictly (no ``NaN`` / ``Infinity`` tokens).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from numbers import Integral, Real
from pathlib import Path
from typing import IO, Any

#: Prefix and suffix of the temporary files, so stale ones can be recognised.
TMP_SUFFIX = ".tmp"


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``.

    For libraries that write to a file name (safetensors, PIL). On an exception the
    temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    os.close(handle)
    try:
        yield Path(tmp)
        _apply_umask(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def current_umask() -> int:
    """The process umask, read without changing it where the platform allows (setting
    and restoring it is racy in a threaded program)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """Permissions of a new regular file under the current umask (``0o666 & ~umask``)."""
    return 0o666 & ~current_umask()


def _apply_umask(tmp: str) -> None:
    # mkstemp creates files 0600; give the result the permissions of an ordinary file.
    os.chmod(tmp, file_mode())


def _atomic(path: str | Path, mode: str, write: Callable[[IO[Any]], None]) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        kwargs = {"encoding": "utf-8", "newline": ""} if "b" not in mode else {}
        with open(tmp, mode, **kwargs) as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
    return path


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return _atomic(path, "wb", lambda f: f.write(data))


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return _atomic(path, "w", lambda f: f.write(text))


def dumps_json(data: Any, indent: int | None = 2) -> str:
    """Strict JSON text of ``data`` (a non-finite float raises ``ValueError``)."""
    return json.dumps(data, indent=indent, allow_nan=False, default=str)


def json_safe(data: Any) -> Any:
    """``data`` with every non-finite float (NaN, infinity; also numpy scalars) replaced
    by None, for reports where "undefined" is a legitimate value; the JSON stays strict."""
    if isinstance(data, Mapping):
        return {key: json_safe(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [json_safe(value) for value in data]
    if isinstance(data, Integral) and not isinstance(data, bool):
        return int(data)
    if isinstance(data, Real):
        number = float(data)
        return number if math.isfinite(number) else None
    return data


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented, strict JSON atomically (keys keep their order)."""
    return write_text(path, dumps_json(data) + "\n")


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


def write_npz(path: str | Path, arrays: Mapping[str, Any]) -> Path:
    """Write numpy arrays to a compressed ``.npz`` atomically."""
    import numpy as np

    return _atomic(path, "wb", lambda f: np.savez_compressed(f, **arrays))
