"""Where a job's images and detectors come from: local paths or ``pyarrow.fs`` URIs.

An input is named by its *identity*: the absolute path of a local file (as the local
engine's ``summary.jsonl`` does; ``file://`` URIs become paths), or the URI itself for any
other filesystem ``pyarrow.fs.FileSystem.from_uri`` knows (``s3://``, ``gs://``,
``hdfs://``, ...; credentials come from the usual environment of each machine). Folders
are listed recursively, sorted, hidden entries skipped, image suffixes only, exactly like
:func:`anomalign.data.inputs.expand_inputs`.

A *detector map* (``--detector-map map.csv``) assigns a bundle to each input::

    pattern,detector
    line1/bottle,bottle.anomalign            # a folder (or a file): every image below it
    line1/*/screw_*.png,screw.anomalign      # a glob (fnmatch: * also matches '/')
    s3://plant/cable/*,s3://models/cable.anomalign

Relative local patterns and bundle paths are read from the CSV's own folder; a pattern
is matched against the input's identity; the first matching row wins.
"""

from __future__ import annotations

import csv
import fnmatch
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from anomalign.data.images import IMAGE_SUFFIXES, path_text
from anomalign.data.inputs import expand_inputs, safe_resolve
from anomalign.errors import ConfigError, DataError


def is_uri(text: str) -> bool:
    """True for ``scheme://...`` (a Windows drive letter is not a scheme)."""
    scheme, sep, _ = str(text).partition("://")
    return bool(sep) and len(scheme) > 1 and scheme.replace("+", "").isalnum()


def local_identity(path: str | Path) -> str:
    """The identity of a local file, as the local engine names it: its resolved absolute
    path as printable text (a broken link is named as itself, not by its missing target)."""
    path = Path(path).expanduser()
    if path.is_symlink() and not path.exists():
        return path_text(os.path.abspath(path))
    return path_text(safe_resolve(path))


class Input(NamedTuple):
    """One image of a job: how rows name it, and the bytes that locate it (the listed
    local path as the OS encodes it, so any file name can be read; a URI as UTF-8)."""

    identity: str
    source: bytes


def normalize(item: str | Path) -> str:
    """``file://`` URIs and paths as absolute local paths; other URIs unchanged."""
    text = str(item)
    if text.startswith("file://"):
        return local_identity(text[len("file://") :])
    if is_uri(text):
        return text
    return local_identity(text)


@lru_cache(maxsize=16)
def _root(scheme: str, host: str):
    """``(filesystem, root path)`` of ``scheme://host``, built once per process (building
    an S3 filesystem may ask for the bucket's region)."""
    from pyarrow import fs

    return fs.FileSystem.from_uri(f"{scheme}://{host}")


def split_uri(uri: str):
    """``(filesystem, path inside it, scheme, host, root path)`` for a URI."""
    scheme, _, rest = uri.partition("://")
    host, _, remainder = rest.partition("/")
    filesystem, root = _root(scheme, host)
    root = root.rstrip("/")
    path = f"{root}/{remainder}" if root else "/" + remainder
    return filesystem, path, scheme, host, root


def _list_uri(uri: str) -> list[str]:
    from pyarrow import fs

    filesystem, path, scheme, host, root = split_uri(uri.rstrip("/"))
    info = filesystem.get_file_info(path)
    if info.type == fs.FileType.File:
        return [uri]
    if info.type != fs.FileType.Directory:
        raise DataError(f"Input '{uri}' does not exist (or cannot be listed).")
    found = []
    for entry in filesystem.get_file_info(fs.FileSelector(path, recursive=True)):
        if entry.type != fs.FileType.File:
            continue
        relative = PurePosixPath(entry.path).relative_to(PurePosixPath(path))
        if any(part.startswith(".") for part in relative.parts):
            continue
        if relative.suffix.lower() in IMAGE_SUFFIXES:
            inside = entry.path[len(root) :].lstrip("/")
            found.append(f"{scheme}://{host}/{inside}")
    return sorted(found)


def list_inputs(items: Sequence[str | Path], exclude: str | None = None) -> list[Input]:
    """Every image in ``items`` (files, folders, URIs), in order, without duplicates and
    without anything below ``exclude`` (the output folder's identity)."""
    found: list[Input] = []
    local: list[str] = []

    def flush() -> None:
        if local:
            found.extend(Input(local_identity(p), os.fsencode(p)) for p in expand_inputs(local))
            local.clear()

    for item in items:
        text = str(item)[len("file://") :] if str(item).startswith("file://") else str(item)
        if is_uri(text):
            flush()
            found.extend(Input(uri, uri.encode("utf-8")) for uri in _list_uri(text))
        else:
            local.append(text)
    flush()
    seen: set[str] = set()
    unique = []
    for entry in found:
        identity = entry.identity
        if identity in seen:
            continue
        seen.add(identity)
        if exclude is not None and (identity == exclude or identity.startswith(exclude + "/")):
            continue
        unique.append(entry)
    if not unique:
        raise DataError(f"The inputs hold no images outside the output folder '{exclude}'.")
    return unique


def read_bytes(source: bytes | str) -> bytes:
    """The bytes of one input: an :attr:`Input.source`, or a local path or URI as text."""
    text = os.fsdecode(source) if isinstance(source, bytes) else source
    if not is_uri(text):
        path = Path(text)
        if not path.is_file():
            kind = "a broken symbolic link" if path.is_symlink() else "not a readable file"
            raise DataError(f"Image file '{path_text(path)}' is {kind}.")
        return path.read_bytes()
    filesystem, path, *_ = split_uri(text)
    with filesystem.open_input_file(path) as stream:
        return stream.read()


def content_hash(data: bytes) -> str:
    """The resume key of a file's content: SHA-256 of its bytes, hex."""
    return hashlib.sha256(data).hexdigest()


def local_copy(identity: str, cache: str | Path) -> Path:
    """A local file for a bundle: the path itself, or a URI copied once into ``cache``."""
    if not is_uri(identity):
        return Path(identity)
    target = Path(cache) / hashlib.sha256(identity.encode()).hexdigest()[:16]
    target = target.with_name(target.name + "-" + PurePosixPath(identity).name)
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        partial.write_bytes(read_bytes(identity))
        os.replace(partial, target)
    return target


@dataclass(frozen=True)
class MapRule:
    """One row of a detector map: inputs matching ``pattern`` use ``detector``."""

    pattern: str
    detector: str

    @property
    def glob(self) -> bool:
        return any(char in self.pattern for char in "*?[")

    def matches(self, identity: str) -> bool:
        """A glob matches with fnmatch; a plain path is the file itself or a folder above."""
        if self.glob:
            return fnmatch.fnmatchcase(identity, self.pattern)
        return identity == self.pattern or identity.startswith(self.pattern.rstrip("/") + "/")


def _resolve(text: str, base: Path) -> str:
    """A CSV cell as an identity: URIs as they are, paths absolute from the CSV's folder
    and resolved like inputs are (for a glob: the folders before its first wildcard)."""
    if text.startswith("file://"):
        text = text[len("file://") :]
    if is_uri(text):
        return text
    path = Path(text).expanduser()
    parts = (path if path.is_absolute() else base / path).parts
    fixed = next((i for i, part in enumerate(parts) if any(c in part for c in "*?[")), None)
    if fixed is None:
        return str(Path(*parts).resolve())
    return str(Path(*parts[:fixed]).resolve().joinpath(*parts[fixed:]))


def read_detector_map(path: str | Path) -> list[MapRule]:
    """Parse a ``pattern,detector`` CSV (header optional; ``#`` starts a comment line)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Detector map '{path}' does not exist.")
    base = path.resolve().parent
    rules = []
    lines = [
        line
        for line in path.read_text(encoding="utf-8-sig").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    for number, row in enumerate(csv.reader(lines), start=1):
        cells = [cell.strip() for cell in row]
        if number == 1 and [c.lower() for c in cells[:2]] == ["pattern", "detector"]:
            continue
        if len(cells) != 2 or not all(cells):
            raise ConfigError(
                f"Detector map '{path}', row {number}: expected 'pattern,detector', got {row!r}."
            )
        pattern, detector = cells
        rules.append(MapRule(_resolve(pattern, base), _resolve(detector, base)))
    if not rules:
        raise ConfigError(f"Detector map '{path}' has no rows.")
    return rules


def assign_detectors(
    identities: Sequence[str], rules: Sequence[MapRule], default: str | None
) -> list[str | None]:
    """The bundle of each input: the first matching rule's, else ``default`` (None: the
    input has no detector and becomes an error row)."""
    assigned = []
    for identity in identities:
        match = next((rule.detector for rule in rules if rule.matches(identity)), default)
        assigned.append(match)
    return assigned
