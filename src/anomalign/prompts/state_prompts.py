"""AnoCLIP's unified domain-aware contrastive state prompts (anoclip.md §3).

Every category gets the same 7 normal and 7 abnormal *states*; each state is placed
in 66 domain-aware sentence patterns (three families of 22), giving 462 sentences per
state. Objects use the families "industrial photo", "industrial image" and
"manufacturing image"; textures use "industrial photo", "textural photo" and
"surface picture". Sentence order follows the official code (patterns outer, states
inner) because the test-time adapter's output basis is indexed by it.

The prompt sets are plain data below; add a state, a pattern or a domain family by
editing the tuples.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from anomalign.data.categories import is_texture

Domain = Literal["object", "texture"]

NORMAL_STATES: tuple[str, ...] = (
    "normal {}",
    "flawless {}",
    "perfect {}",
    "unblemished {}",
    "{} without flaw",
    "{} without defect",
    "{} without damage",
)
ABNORMAL_STATES: tuple[str, ...] = (
    "damaged {}",
    "abnormal {}",
    "imperfect {}",
    "blemished {}",
    "{} with flaw",
    "{} with defect",
    "{} with damage",
)

#: The 22 base patterns; ``{domain}`` is e.g. "industrial photo", ``{}`` the state.
#: ``{art}`` is the article that precedes the domain words directly.
BASE_PATTERNS: tuple[str, ...] = (
    "a cropped {domain} of the {{}}",
    "a cropped {domain} of a {{}}",
    "a close-up {domain} of a {{}}",
    "a close-up {domain} of the {{}}",
    "a bright {domain} of a {{}}",
    "a bright {domain} of the {{}}",
    "a dark {domain} of the {{}}",
    "a dark {domain} of a {{}}",
    "a jpeg corrupted {domain} of a {{}}",
    "a jpeg corrupted {domain} of the {{}}",
    "a blurry {domain} of the {{}}",
    "a blurry {domain} of a {{}}",
    "{art} {domain} of a {{}}",
    "{art} {domain} of the {{}}",
    "{art} {domain} of a small {{}}",
    "{art} {domain} of the small {{}}",
    "{art} {domain} of a large {{}}",
    "{art} {domain} of the large {{}}",
    "{art} {domain} of the {{}} for visual inspection",
    "{art} {domain} of a {{}} for visual inspection",
    "{art} {domain} of the {{}} for anomaly detection",
    "{art} {domain} of a {{}} for anomaly detection",
)

#: Domain families per category group (three families of 22 patterns each).
DOMAIN_FAMILIES: dict[str, tuple[str, ...]] = {
    "object": ("industrial photo", "industrial image", "manufacturing image"),
    "texture": ("industrial photo", "textural photo", "surface picture"),
}

#: Category folder names that the official code maps to another object word.
CATEGORY_NAME_MAP: dict[str, str] = {"macaroni1": "macaroni", "macaroni2": "macaroni"}

DEFAULT_OBJECT_NAME = "object"

_A_BEFORE_VOWEL = re.compile(r"\b([Aa]) (?=[aeiouAEIOU])")


def fix_articles(sentence: str) -> str:
    """Use "an" before a vowel ("a abnormal bottle" -> "an abnormal bottle")."""
    return _A_BEFORE_VOWEL.sub(lambda m: "an " if m.group(1) == "a" else "An ", sentence)


def domain_patterns(domain: Domain) -> list[str]:
    """The 66 sentence patterns of a domain group, each with one ``{}`` for the state."""
    if domain not in DOMAIN_FAMILIES:
        raise ValueError(f"domain must be one of {sorted(DOMAIN_FAMILIES)}, got '{domain}'")
    patterns = []
    for family in DOMAIN_FAMILIES[domain]:
        article = "an" if family[0] in "aeiou" else "a"
        patterns.extend(p.format(domain=family, art=article) for p in BASE_PATTERNS)
    return patterns


def domain_for_category(category: str | None) -> Domain:
    """ "texture" for the MVTec AD texture categories, "object" otherwise."""
    return "texture" if category and is_texture(category) else "object"


def object_name_for_category(category: str | None) -> str:
    """The word that fills the prompts: the raw folder name, as the official code uses."""
    if not category:
        return DEFAULT_OBJECT_NAME
    return CATEGORY_NAME_MAP.get(category, category)


@dataclass(frozen=True)
class StatePrompts:
    """Normal and abnormal sentences for one object word and domain."""

    object_name: str
    domain: Domain
    normal: tuple[str, ...]
    abnormal: tuple[str, ...]


def build_state_prompts(
    object_name: str, domain: Domain = "object", grammatical: bool = False
) -> StatePrompts:
    """Build the 462 + 462 sentences (verbatim as the official code, or with fixed articles)."""
    patterns = domain_patterns(domain)

    def sentences(states: tuple[str, ...]) -> tuple[str, ...]:
        out = [p.format(s.format(object_name)) for p in patterns for s in states]
        return tuple(fix_articles(s) for s in out) if grammatical else tuple(out)

    return StatePrompts(object_name, domain, sentences(NORMAL_STATES), sentences(ABNORMAL_STATES))
