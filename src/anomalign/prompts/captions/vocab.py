"""Attribute vocabularies derived from captions, used to make negative prompts.

FineGrainedAD's attribute negatives are "every vocabulary item this class does not
use", and its location replacement picks another location from the global list. The
vocabularies are therefore derived from all captions rather than kept by hand: adding
or editing a caption updates them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

from anomalign.prompts.captions.schema import CategoryCaption


@dataclass(frozen=True)
class Vocabularies:
    """Deduplicated, deterministically sorted attribute values over a set of captions."""

    colors: tuple[str, ...]
    textures: tuple[str, ...]
    shapes: tuple[str, ...]
    locations: tuple[str, ...]
    numbers: tuple[str, ...]

    def as_dict(self) -> dict[str, tuple[str, ...]]:
        """The five lists keyed by attribute name."""
        return {
            "color": self.colors,
            "texture": self.textures,
            "shape": self.shapes,
            "location": self.locations,
            "number": self.numbers,
        }


def _key(value: str) -> str:
    return " ".join(value.split()).lower()


def _sorted_unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted({_key(v) for v in values if v.strip()}))


def _number_order(value: str) -> tuple[int, int, str]:
    # Digits in numeric order first, then words ("multiple") alphabetically.
    return (0, int(value), "") if value.isdigit() else (1, 0, value)


def derive_vocabularies(captions: Iterable[CategoryCaption]) -> Vocabularies:
    """Collect every colour, texture, shape, location and number used in ``captions``.

    Values are compared case- and whitespace-insensitively and returned lower-cased,
    sorted alphabetically (numbers numerically, words after digits).
    """
    captions = list(captions)
    return Vocabularies(
        colors=_sorted_unique(c for cap in captions for c in cap.level3.colors),
        textures=_sorted_unique(t for cap in captions for t in cap.level3.textures),
        shapes=_sorted_unique(s for cap in captions for s in cap.level3.shapes),
        locations=_sorted_unique(loc for cap in captions for loc in cap.level2.locations),
        numbers=tuple(
            sorted(
                {_key(n) for cap in captions for n in cap.level2.numbers},
                key=_number_order,
            )
        ),
    )


@cache
def shipped_vocabularies() -> Vocabularies:
    """Vocabularies derived from every caption that ships with the package."""
    from anomalign.prompts.captions.store import list_shipped, load_shipped

    return derive_vocabularies(load_shipped(name) for name in list_shipped())


def attribute_negatives(caption: CategoryCaption, vocabularies: Vocabularies) -> Vocabularies:
    """The vocabulary items ``caption`` does not use: its colour/texture/shape negatives.

    Locations and numbers are filtered the same way, for the component-level "wrong
    location" replacement.
    """
    used = derive_vocabularies([caption])

    def unused(pool: tuple[str, ...], taken: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(v for v in pool if v not in set(taken))

    return Vocabularies(
        colors=unused(vocabularies.colors, used.colors),
        textures=unused(vocabularies.textures, used.textures),
        shapes=unused(vocabularies.shapes, used.shapes),
        locations=unused(vocabularies.locations, used.locations),
        numbers=unused(vocabularies.numbers, used.numbers),
    )
