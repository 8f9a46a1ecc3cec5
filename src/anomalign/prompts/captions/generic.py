"""A generic caption from the category word alone, for parts without an MFSC caption.

FineGrainedAD needs a caption. When none is shipped or given, :func:`generic_caption`
builds the smallest valid one from the category word: one object-level component (the
object itself), no attributes and generic defect states, so the prompts reduce to
PromptAD's (``ctx + "<object>."``, ``ctx + "damaged <object>."`` ...). Fine-grained
captions (``anomalign captions build``) usually localise better.
"""

from __future__ import annotations

from anomalign.prompts.captions.schema import CategoryCaption, normalize_category

#: Defect states of a generic caption (PromptAD's eight generic abnormal states).
GENERIC_DEFECTS: tuple[str, ...] = (
    "damaged {}",
    "flawed {}",
    "abnormal {}",
    "imperfect {}",
    "blemished {}",
    "{} with flaw",
    "{} with defect",
    "{} with damage",
)

#: Background phrase of a generic caption ("<phrase> background" in the prompts).
GENERIC_BACKGROUND = "plain"


def object_word(category: str) -> str:
    """The words of a category name: ``"metal_nut"`` -> ``"metal nut"``."""
    words = " ".join(normalize_category(category).replace("_", " ").split())
    return words or "object"


def generic_caption(category: str) -> CategoryCaption:
    """The generic caption of ``category``: its word as foreground and only component."""
    word = object_word(category)
    return CategoryCaption.model_validate(
        {
            "category": normalize_category(category),
            "generic": True,
            "Level_1": {"foreground": word, "background": GENERIC_BACKGROUND},
            "Level_2": {
                "entity": [word],
                "number": ["1"],
                "location": ["center"],
                "relation": word,
            },
            "Level_3": {
                "direction": [],
                "color": [],
                "texture": [],
                "shape": [],
                "entity_caption": [word],
            },
            "caption": word,
            "defects": list(GENERIC_DEFECTS),
        }
    )
