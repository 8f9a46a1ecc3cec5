"""Load shipped and user caption files, list what ships, and hash a caption's content.

Shipped captions live in ``anomalign/prompts/captions/data/<dataset>/<category>.json``
and are read through :mod:`importlib.resources`, so they work from a wheel or a zip.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from anomalign.prompts.captions.schema import (
    CaptionError,
    CategoryCaption,
    normalize_category,
    parse_caption,
)

#: Datasets whose captions ship with the package, in listing order.
SHIPPED_DATASETS: tuple[str, ...] = ("mvtec", "visa", "synthetic")


def _data_root() -> Traversable:
    return resources.files("anomalign.prompts.captions").joinpath("data")


@cache
def _index() -> dict[str, tuple[str, str]]:
    """Category name -> (dataset, file name) for every shipped caption."""
    index: dict[str, tuple[str, str]] = {}
    for dataset in SHIPPED_DATASETS:
        folder = _data_root().joinpath(dataset)
        if not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir(), key=lambda item: item.name):
            if entry.name.endswith(".json"):
                index.setdefault(entry.name.removesuffix(".json"), (dataset, entry.name))
    return index


def list_shipped(dataset: str | None = None) -> tuple[str, ...]:
    """Names of the shipped captions (all datasets, or one of :data:`SHIPPED_DATASETS`)."""
    if dataset is not None and dataset not in SHIPPED_DATASETS:
        raise CaptionError(
            f"Unknown caption dataset {dataset!r}; expected one of {', '.join(SHIPPED_DATASETS)}."
        )
    return tuple(
        name for name, (where, _) in _index().items() if dataset is None or where == dataset
    )


def shipped_dataset(name: str) -> str:
    """The dataset (``mvtec`` or ``visa``) a shipped category belongs to."""
    return _lookup(name)[0]


def _lookup(name: str) -> tuple[str, str]:
    key = normalize_category(name)
    dataset = None
    if "/" in key:
        dataset, key = key.split("/", 1)
    found = _index().get(key)
    if found is None or (dataset is not None and found[0] != dataset):
        raise CaptionError(
            f"No shipped caption for category {name!r}. Shipped: {', '.join(list_shipped())}. "
            "Pass a caption file path for other parts (see 'anomalign captions build')."
        )
    return found


#: Largest caption file read (shipped ones are about 3 kB).
MAX_CAPTION_BYTES = 256 * 1024
#: Deepest nesting of JSON arrays and objects a caption may have (real ones reach 3).
MAX_CAPTION_DEPTH = 16
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _nesting_depth(text: str) -> int:
    """Deepest nesting of ``[``/``{`` in JSON text (brackets inside strings ignored)."""
    depth = deepest = 0
    for match in _JSON_TOKEN.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif token in "]}":
            depth -= 1
    return deepest


def _decode(text: str, source: str) -> CategoryCaption:
    if len(text) > MAX_CAPTION_BYTES:
        raise CaptionError(f"{source}: larger than {MAX_CAPTION_BYTES} characters.")
    text = text.removeprefix("\ufeff")  # a UTF-8 byte order mark (Windows editors)
    if _nesting_depth(text) > MAX_CAPTION_DEPTH:
        raise CaptionError(
            f"{source}: JSON nested deeper than {MAX_CAPTION_DEPTH} levels; a caption is "
            "an object of levels holding lists of strings."
        )
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as error:
        raise CaptionError(
            f"{source}: not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})."
        ) from None
    except (ValueError, RecursionError) as error:
        raise CaptionError(f"{source}: not valid JSON ({error}).") from None
    return parse_caption(data, source=source)


def _no_constant(token: str) -> None:
    raise ValueError(f"{token} is not a JSON value")


@cache
def load_shipped(name: str) -> CategoryCaption:
    """The shipped caption of category ``name`` (e.g. ``"bottle"``, ``"visa/pcb1"``)."""
    dataset, file_name = _lookup(name)
    entry = _data_root().joinpath(dataset, file_name)
    return _decode(entry.read_text(encoding="utf-8"), f"shipped caption {dataset}/{file_name}")


def load_caption_file(path: str | Path) -> CategoryCaption:
    """Read and validate a caption JSON file; errors name the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise CaptionError(f"Caption file '{path}' does not exist or is not a file.")
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_CAPTION_BYTES + 1)
        if len(data) > MAX_CAPTION_BYTES:
            raise CaptionError(
                f"Caption file '{path}' is larger than {MAX_CAPTION_BYTES} bytes; a caption "
                "is a few kilobytes of JSON."
            )
        text = data.decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise CaptionError(f"Cannot read caption file '{path}': {error}") from None
    return _decode(text, f"caption file '{path}'")


def resolve_caption(source: str | Path | CategoryCaption) -> CategoryCaption:
    """A caption from a shipped name, a path to a JSON file, or a caption object."""
    if isinstance(source, CategoryCaption):
        return source
    if isinstance(source, Path) or str(source).endswith(".json") or Path(str(source)).exists():
        return load_caption_file(source)
    return load_shipped(str(source))


def caption_hash(caption: CategoryCaption) -> str:
    """SHA-256 of the caption's canonical JSON (sorted keys, no whitespace), as hex.

    The hash depends on content only (not on file formatting, the level-list wrapping or
    the field spelling used in the file), so fitted detectors can record which caption
    they were built with.
    """
    canonical = json.dumps(
        caption.to_json_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
