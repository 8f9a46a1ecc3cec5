"""Guarding an output folder: checked before any work, locked while written, tidied after
a crash.

* :func:`check_output_dir` / :func:`check_output_file` fail at once, on one line, when
  an output path cannot be written (a file where a folder is wanted, a folder where a
  file is wanted, no permission), so no work is done that cannot be saved.
* :class:`OutputLock` holds an exclusive ``flock`` on ``<folder>/.anomalign.lock`` for a
  run; a second run into the same folder is refused while the first is alive. The kernel
  drops the lock when its process dies, even by SIGKILL, so a stale lock never blocks.
* :func:`remove_stale_temporaries` deletes the temporary files (``.NAME.XXXX.tmp``) that
  a killed run left behind; it is called with the lock held, when no writer is running.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path
from types import TracebackType

from anomalign.errors import DataError
from anomalign.io import TMP_SUFFIX, file_mode

LOCK_NAME = ".anomalign.lock"


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def check_output_dir(path: str | Path, what: str = "--out") -> Path:
    """Raise :class:`DataError` unless ``path`` is, or can be created as, a writable folder."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DataError(f"{what} '{path}' is a file, not a folder.")
    existing = _nearest_existing(path)
    if not existing.is_dir():
        raise DataError(f"{what} '{path}': '{existing}' is a file, not a folder.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise DataError(f"{what} '{path}': permission denied (cannot write in '{existing}').")
    return path


def check_output_file(path: str | Path, what: str = "--out") -> Path:
    """Raise :class:`DataError` unless ``path`` can be written as a file."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{what} '{path}' is a folder; expected a file name.")
    if path.exists() and not os.access(path, os.W_OK):
        raise DataError(f"{what} '{path}': permission denied (the file is not writable).")
    check_output_dir(path.parent, what=f"{what} '{path}': folder")
    return path


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the ``.NAME.XXXX.tmp`` files below ``folder`` (left by a killed run); call
    only while holding the folder's :class:`OutputLock`. Returns what was removed."""
    removed = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
        for name in filenames:
            if name.startswith(".") and name.endswith(TMP_SUFFIX) and name.count(".") >= 3:
                path = Path(dirpath) / name
                try:
                    path.unlink()
                    removed.append(path)
                except FileNotFoundError:
                    pass
    return removed


class OutputLock:
    """An exclusive lock on an output folder for the duration of a ``with`` block."""

    def __init__(self, folder: str | Path, command: str = "anomalign") -> None:
        self.folder = Path(folder)
        self.command = command
        self._fd: int | None = None

    @property
    def path(self) -> Path:
        return self.folder / LOCK_NAME

    def acquire(self) -> None:
        """Take the lock or raise :class:`DataError` naming the run that holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, file_mode())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another run"
            os.close(fd)
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise DataError(
                    f"'{self.folder}' is being written by another run ({holder}); wait for it "
                    "to finish or use another output folder."
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{self.command} pid {os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()
