"""Turn the paths a user types (files and folders) into a sorted list of image files."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from anomalign.data.images import IMAGE_SUFFIXES
from anomalign.errors import DataError


def _folder_images(folder: Path) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [
            Path(dirpath) / name
            for name in filenames
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES
        ]
    return sorted(found)


def expand_inputs(items: Sequence[str | Path], what: str = "images") -> list[Path]:
    """Files as given and folders expanded to their images (recursively, sorted, hidden
    entries skipped); duplicates are dropped. Raises :class:`DataError` for a missing path
    or when nothing is found."""
    seen: set[Path] = set()
    paths: list[Path] = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            found = _folder_images(path)
        elif path.is_file():
            found = [path]
        else:
            raise DataError(f"{what.capitalize()} path '{path}' does not exist.")
        for file in found:
            key = file.resolve()
            if key not in seen:
                seen.add(key)
                paths.append(file)
    if not paths:
        listed = ", ".join(f"'{i}'" for i in items) or "(none given)"
        raise DataError(
            f"No {what} found in {listed}; expected image files or folders holding "
            f"{', '.join(sorted(IMAGE_SUFFIXES))} files."
        )
    return paths


def output_keys(paths: Sequence[Path]) -> list[str]:
    """A unique relative name per image: its path below the inputs' common folder,
    without suffix unless two images share a stem (``a.png`` and ``a.jpg``)."""
    if not paths:
        return []
    absolute = [p.resolve() for p in paths]
    common = Path(os.path.commonpath([str(p.parent) for p in absolute]))
    relative = [p.relative_to(common).as_posix() for p in absolute]
    stems = [PurePosixPath(r).with_suffix("").as_posix() for r in relative]
    counts: dict[str, int] = {}
    for stem in stems:
        counts[stem] = counts.get(stem, 0) + 1
    return [stem if counts[stem] == 1 else rel for stem, rel in zip(stems, relative, strict=True)]
