"""Read a copy of the official ``fine_grained_prompts.py`` as data, never as code.

The official FineGrainedAD release keeps its captions, defect phrases and attribute
vocabularies as Python literals in ``PromptAD/fine_grained_prompts.py``. This module
parses such a file with :mod:`ast` and evaluates only literal nodes (strings, numbers,
lists, tuples, dicts, ``True``/``False``/``None``): the file is never imported or
executed, and any other statement (an import, a call, a function, a name reference...)
is refused with an error naming the file and line. The package ships none of that text;
a user brings their own copy (``anomalign captions import``).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anomalign.prompts.captions.schema import CaptionError, CategoryCaption, parse_caption

#: Names of the official file's vocabulary lists, by our attribute name.
VOCABULARY_NAMES: dict[str, str] = {
    "color": "fine_grained_color_list",
    "texture": "fine_grained_texture_list",
    "shape": "fine_grained_shape_list",
    "location": "fine_grained_location_list",
    "number": "fine_grained_number_list",
}
CLASS_IDS = "total_classes2id"
DEFECTS = "class_state_abnormal_refined"


@dataclass
class OfficialImport:
    """What an official-format file holds, in our schema.

    Attributes:
        captions: category -> validated caption (with its defect phrases).
        vocabulary: the official vocabulary lists (attribute name -> words), verbatim.
        problems: one line per category that could not be turned into a caption.
    """

    captions: dict[str, CategoryCaption] = field(default_factory=dict)
    vocabulary: dict[str, list[str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def read_literals(path: str | Path) -> dict[str, Any]:
    """The top-level ``NAME = <literal>`` assignments of a Python file, as values.

    Only assignments of literals to plain names (and bare string constants, such as
    docstrings) are allowed; anything else raises :class:`CaptionError` naming the file
    and the line.
    """
    path = Path(path)
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise CaptionError(f"Cannot read '{path}': {error}") from None
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as error:
        raise CaptionError(f"{path}:{error.lineno}: not valid Python ({error.msg}).") from None
    values: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # a docstring or a bare string
        target = None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target = node.target
        if not isinstance(target, ast.Name):
            raise CaptionError(
                f"{path}:{node.lineno}: only 'NAME = <literal>' assignments are read; "
                f"found {type(node).__name__}."
            )
        try:
            values[target.id] = ast.literal_eval(node.value)  # type: ignore[union-attr]
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            raise CaptionError(
                f"{path}:{node.lineno}: the value of {target.id!r} is not a plain literal "
                "(only strings, numbers, lists, tuples, dicts, True, False and None)."
            ) from None
    return values


def import_official(path: str | Path, version: str = "v3") -> OfficialImport:
    """Turn an official-format caption file into our captions and vocabulary.

    Captions come from ``fine_grained_normal_prompts_<version>`` (a list indexed by
    ``total_classes2id``), defect phrases from ``class_state_abnormal_refined``.
    """
    path = Path(path)
    values = read_literals(path)
    table_name = f"fine_grained_normal_prompts_{version}"
    for needed in (table_name, CLASS_IDS, DEFECTS):
        if needed not in values:
            raise CaptionError(f"{path}: has no {needed!r}; is this an official-format file?")
    table, ids, defects = values[table_name], values[CLASS_IDS], values[DEFECTS]
    if not isinstance(table, list | tuple) or not isinstance(ids, dict):
        raise CaptionError(f"{path}: {table_name} must be a list and {CLASS_IDS} a dict.")
    if not isinstance(defects, dict):
        raise CaptionError(f"{path}: {DEFECTS} must be a dict of category -> phrases.")
    result = OfficialImport()
    for name, attribute in VOCABULARY_NAMES.items():
        words = values.get(attribute)
        if isinstance(words, list | tuple) and all(isinstance(w, str) for w in words):
            result.vocabulary[name] = list(words)
    for category, index in sorted(ids.items(), key=lambda item: (str(item[1]), str(item[0]))):
        category = str(category)
        if not isinstance(index, int) or not 0 <= index < len(table):
            result.problems.append(f"{category}: index {index!r} is not in {table_name}")
            continue
        entry = table[index]
        if not isinstance(entry, dict):
            result.problems.append(f"{category}: entry {index} is not a dict")
            continue
        data = {k: v for k, v in entry.items() if k in ("Level_1", "Level_2", "Level_3", "caption")}
        data.update(category=category, defects=list(defects.get(category, [])))
        try:
            result.captions[category] = parse_caption(data, source=f"{path.name}[{category}]")
        except CaptionError as error:
            result.problems.append(str(error).replace("\n", " "))
    return result
