"""Typed schema of one category's Multi-Level Fine-Grained Semantic Caption (MFSC).

The JSON shape follows the official ``fine_grained_normal_prompts_v3`` entries
(``Level_1``, ``Level_2``, ``Level_3``, ``caption``; each level may be a one-element
list, as in the official release, or a plain object), plus two fields of ours:
``category`` and ``defects`` (the category's abnormal-state templates, each holding
exactly one ``{}`` for the object name).

Validation errors are reported as :class:`CaptionError` with the failing field path
in the official spelling, e.g. ``Level_2.location: expected 3 entries (one per entity),
got 2``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from anomalign.errors import ConfigError

#: Smallest and largest number of entities (components) a caption may have.
MIN_ENTITIES = 1
MAX_ENTITIES = 5

#: Non-digit values accepted in ``Level_2.number``; digits ("1", "2", ...) are accepted too.
NUMBER_WORDS: frozenset[str] = frozenset({"multiple"})

_PER_ENTITY_LEVEL2 = ("number", "location")
_PER_ENTITY_LEVEL3 = ("direction", "color", "texture", "shape", "entity_caption")
_ATTRIBUTE_FIELDS = ("direction", "color", "texture", "shape")


class CaptionError(ConfigError):
    """A caption file or object does not match the MFSC schema."""


def _clean_text(value: str) -> str:
    text = " ".join(value.split())
    if not text:
        raise PydanticCustomError("empty_text", "must be a non-empty string")
    return text


#: A string with surrounding and repeated whitespace collapsed; empty strings are rejected.
Text = Annotated[str, Field(strict=True), AfterValidator(_clean_text)]


def _count(value: Any) -> str:
    # LLMs often answer with JSON integers; accept them as their decimal text.
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise PydanticCustomError("bad_number", f"expected a string, got {value!r}")
    word = " ".join(value.split()).lower()
    if word in NUMBER_WORDS:
        return word
    if word.isdigit() and int(word) > 0:
        return str(int(word))
    words = ", ".join(repr(w) for w in sorted(NUMBER_WORDS))
    raise PydanticCustomError(
        "bad_number",
        f"{value!r} is not a count; expected a positive integer such as '1' or '3', or {words}",
    )


#: A count: a positive integer as text ("1", "3") or a word from :data:`NUMBER_WORDS`.
Count = Annotated[str, BeforeValidator(_count)]


def _unwrap_level(value: Any) -> Any:
    """Accept the official one-element-list form of a level as well as a plain object."""
    if isinstance(value, list):
        if len(value) != 1:
            raise PydanticCustomError(
                "level_list",
                f"expected an object, or a list holding exactly one object; got {len(value)} items",
            )
        return value[0]
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, str_strip_whitespace=True
    )


class Level1(_Strict):
    """Image view: what the object is and what lies behind it."""

    foreground: Text
    background: Text


class Level2(_Strict):
    """Foreground view: the entities, how many of each, where they are, how they relate."""

    entities: tuple[Text, ...] = Field(alias="entity")
    numbers: tuple[Count, ...] = Field(alias="number")
    locations: tuple[Text, ...] = Field(alias="location")
    relation: Text


class Level3(_Strict):
    """Component view: per-entity direction, colour, texture, shape and a sentence."""

    directions: tuple[Text, ...] = Field(alias="direction")
    colors: tuple[Text, ...] = Field(alias="color")
    textures: tuple[Text, ...] = Field(alias="texture")
    shapes: tuple[Text, ...] = Field(alias="shape")
    entity_captions: tuple[Text, ...] = Field(alias="entity_caption")


def _check_defect(value: str) -> str:
    rest = value.replace("{}", "", 1)
    if "{}" not in value or "{" in rest or "}" in rest:
        raise PydanticCustomError(
            "defect_template",
            f"{value!r} must contain exactly one '{{}}' (where the object name goes) "
            "and no other braces",
        )
    return value


DefectTemplate = Annotated[Text, AfterValidator(_check_defect)]
_DEFECTS: TypeAdapter[tuple[str, ...]] = TypeAdapter(tuple[DefectTemplate, ...])


class CategoryCaption(_Strict):
    """One category's MFSC caption and its defect phrases.

    Attribute names are Pythonic (``level1``, ``entities``, ``colors``...); JSON uses the
    official names (``Level_1``, ``entity``, ``color``...). Either spelling is accepted
    on input; :meth:`to_json_dict` writes the official one. ``generic`` marks a caption
    made from the category word alone (:func:`~anomalign.prompts.captions.generic.
    generic_caption`): one component and no colour, texture, shape or direction.
    """

    category: Text | None = None
    generic: bool = False
    level1: Level1 = Field(alias="Level_1")
    level2: Level2 = Field(alias="Level_2")
    level3: Level3 = Field(alias="Level_3")
    caption: Text
    defects: tuple[DefectTemplate, ...]

    @field_validator("level1", "level2", "level3", mode="before")
    @classmethod
    def _unwrap(cls, value: Any) -> Any:
        return _unwrap_level(value)

    @field_validator("defects")
    @classmethod
    def _some_defects(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise PydanticCustomError("no_defects", "expected at least one defect phrase")
        return value

    @field_validator("category")
    @classmethod
    def _category_name(cls, value: str | None) -> str | None:
        return None if value is None else normalize_category(value)

    @model_validator(mode="after")
    def _per_entity_lengths(self) -> CategoryCaption:
        n = len(self.level2.entities)
        if not MIN_ENTITIES <= n <= MAX_ENTITIES:
            raise PydanticCustomError(
                "entity_count",
                f"Level_2.entity: expected {MIN_ENTITIES} to {MAX_ENTITIES} entities, got {n}",
            )
        problems = []
        for level, model, names in (
            ("Level_2", self.level2, _PER_ENTITY_LEVEL2),
            ("Level_3", self.level3, _PER_ENTITY_LEVEL3),
        ):
            for name in names:
                field = next(k for k, f in type(model).model_fields.items() if f.alias == name)
                got = len(getattr(model, field))
                if self.generic and got == 0 and name in _ATTRIBUTE_FIELDS:
                    continue  # a generic caption describes no attributes
                if got != n:
                    problems.append(
                        f"{level}.{name}: expected {n} entries (one per entity), got {got}"
                    )
        if problems:
            raise PydanticCustomError("entity_lengths", "\n".join(problems))
        duplicates = sorted({e for e in self.level2.entities if self.level2.entities.count(e) > 1})
        if duplicates:
            raise PydanticCustomError(
                "duplicate_entity",
                f"Level_2.entity: entity names must be distinct; repeated: {duplicates}",
            )
        return self

    # -- convenience views -------------------------------------------------------------

    @property
    def foreground(self) -> str:
        """The object word (Level 1 foreground)."""
        return self.level1.foreground

    @property
    def background(self) -> str:
        """The background description (Level 1)."""
        return self.level1.background

    @property
    def num_entities(self) -> int:
        """Number of components E (1 to 5)."""
        return len(self.level2.entities)

    def to_json_dict(self) -> dict[str, Any]:
        """The caption as a JSON-ready dict in the official v3 shape plus our fields."""
        data = self.model_dump(by_alias=True, mode="json")
        out: dict[str, Any] = {}
        if self.category is not None:
            out["category"] = self.category
        if self.generic:
            out["generic"] = True
        for key in ("Level_1", "Level_2", "Level_3"):
            out[key] = [data[key]]
        out["caption"] = data["caption"]
        out["defects"] = data["defects"]
        return out

    def to_json(self) -> str:
        """Stable, human-readable JSON text (two-space indent, trailing newline)."""
        return json.dumps(self.to_json_dict(), indent=2, ensure_ascii=False) + "\n"


def normalize_category(name: str) -> str:
    """Canonical category key: lower case, spaces and dashes as underscores."""
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def _format_location(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif "[" not in part:  # skip pydantic's internal validator names in union branches
            path += f".{part}" if path else part
    return path


def format_validation_error(error: ValidationError) -> str:
    """One line per problem, each starting with the field path in official spelling."""
    lines = []
    for item in error.errors(include_url=False):
        path = _format_location(item["loc"])
        message = item["msg"]
        if item["type"] == "missing":
            message = "required field is missing"
        elif item["type"] == "extra_forbidden":
            message = "unknown field"
        for line in message.splitlines():
            lines.append(f"{path}: {line}" if path else line)
    return "\n".join(f"  - {line}" for line in lines)


def parse_caption(data: Any, *, source: str = "caption") -> CategoryCaption:
    """Validate a decoded JSON object; raise :class:`CaptionError` naming ``source``."""
    if isinstance(data, CategoryCaption):
        return data
    if not isinstance(data, dict):
        raise CaptionError(
            f"{source}: expected a JSON object with Level_1, Level_2, Level_3, caption and "
            f"defects; got {type(data).__name__}"
        )
    try:
        return CategoryCaption.model_validate(data)
    except ValidationError as error:
        raise CaptionError(
            f"{source} is not a valid MFSC caption:\n{format_validation_error(error)}"
        ) from None


def check_defect_phrases(phrases: Sequence[str], *, source: str = "defects") -> tuple[str, ...]:
    """Validate defect templates on their own (each with exactly one ``{}``)."""
    try:
        return _DEFECTS.validate_python(list(phrases))
    except ValidationError as error:
        lines = [
            f"  - {source}[{item['loc'][0]}]: {item['msg']}" if item["loc"] else item["msg"]
            for item in error.errors(include_url=False)
        ]
        raise CaptionError("Invalid defect phrase:\n" + "\n".join(lines)) from None


def consistency_warnings(caption: CategoryCaption) -> list[str]:
    """Soft checks that make the method's word replacements work.

    FineGrainedAD builds abnormal prompts by replacing the foreground word in the
    summary caption, and each entity name and location inside its entity caption; a
    word that is absent there leaves the "abnormal" prompt identical to the normal one.
    """
    warnings = []
    if caption.foreground.lower() not in caption.caption.lower():
        warnings.append(
            f"caption: does not mention the foreground {caption.foreground!r}, so no defect "
            "can be inserted into it"
        )
    level2, level3 = caption.level2, caption.level3
    for i, (entity, location, text) in enumerate(
        zip(level2.entities, level2.locations, level3.entity_captions, strict=True)
    ):
        lowered = text.lower()
        stem = entity.lower().removesuffix("s")
        if stem not in lowered:
            warnings.append(f"Level_3.entity_caption[{i}]: does not mention its entity {entity!r}")
        if location.lower() not in lowered and not (
            location.lower() == "center" and "centrally" in lowered
        ):
            warnings.append(
                f"Level_3.entity_caption[{i}]: does not mention its location {location!r}"
            )
    return warnings
