"""Turn the paths a user types (files and folders) into a sorted list of image files."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from anomalign.data.images import IMAGE_SUFFIXES, path_text
from anomalign.errors import DataError


def safe_resolve(path: Path) -> Path:
    """``path.resolve()``, or its absolute form when it cannot be resolved (a symbolic
    link loop, an unreadable folder on the way): never raises."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return Path(os.path.abspath(path))


def _folder_images(folder: Path) -> list[Path]:
    denied: list[str] = []

    def note(error: OSError) -> None:
        if isinstance(error, PermissionError):
            denied.append(path_text(error.filename or folder))

    found = []
    for dirpath, dirnames, filenames in os.walk(folder, onerror=note):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [
            Path(dirpath) / name
            for name in filenames
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES
        ]
    if denied and not found:
        raise DataError(
            f"Permission denied: cannot read folder '{denied[0]}'"
            + (f" (and {len(denied) - 1} more)" if len(denied) > 1 else "")
            + "; no images could be listed."
        )
    return sorted(found)


def expand_inputs(items: Sequence[str | Path], what: str = "images") -> list[Path]:
    """Files as given and folders expanded to their images (recursively, sorted, hidden
    entries skipped); duplicates are dropped. Symbolic links inside folders are listed
    as they are (a dangling link or a link loop is left for the reader to report).
    Raises :class:`DataError` for a missing or unreadable path or when nothing is found."""
    seen: set[Path] = set()
    paths: list[Path] = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            found = _folder_images(path)
        elif path.is_file():
            found = [path]
        elif path.is_symlink():
            raise DataError(
                f"{what.capitalize()} path '{path_text(path)}' is a broken symbolic link "
                "(its target is missing or it points at itself)."
            )
        else:
            raise DataError(f"{what.capitalize()} path '{path_text(path)}' does not exist.")
        for file in found:
            key = safe_resolve(file)
            if key not in seen:
                seen.add(key)
                paths.append(file)
    if not paths:
        listed = ", ".join(f"'{path_text(i)}'" for i in items) or "(none given)"
        raise DataError(
            f"No {what} found in {listed}; expected image files or folders holding "
            f"{', '.join(sorted(IMAGE_SUFFIXES))} files."
        )
    return paths


def output_keys(paths: Sequence[Path]) -> list[str]:
    """A unique relative name per image: its path below the inputs' common folder,
    without suffix unless two images share a stem (``a.png`` and ``a.jpg``). Paths are
    made absolute but links are not followed, so a dangling or outside link does not move
    the common folder; names are printable text (see :func:`path_text`)."""
    if not paths:
        return []
    absolute = [Path(os.path.abspath(p)) for p in paths]
    common = Path(os.path.commonpath([str(p.parent) for p in absolute]))
    relative = [path_text(p.relative_to(common).as_posix()) for p in absolute]
    stems = [PurePosixPath(r).with_suffix("").as_posix() for r in relative]
    counts: dict[str, int] = {}
    for stem in stems:
        counts[stem] = counts.get(stem, 0) + 1
    return [stem if counts[stem] == 1 else rel for stem, rel in zip(stems, relative, strict=True)]
