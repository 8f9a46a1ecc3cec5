"""Known category lists of the public benchmarks, kept as data.

Loaders do not reject categories outside these lists (users' own data and the synthetic
generator use other names); the lists drive layout detection and documentation, and
:data:`TEXTURE_CATEGORIES` tells AnoCLIP which prompt domain to use.
"""

from __future__ import annotations

MVTEC_CATEGORIES: tuple[str, ...] = (
    "bottle",
    "cable",
    "capsule",
    "carpet",
    "grid",
    "hazelnut",
    "leather",
    "metal_nut",
    "pill",
    "screw",
    "tile",
    "toothbrush",
    "transistor",
    "wood",
    "zipper",
)

#: MVTec AD categories that are textures rather than objects (AnoCLIP's prompt domains).
TEXTURE_CATEGORIES: frozenset[str] = frozenset({"carpet", "grid", "leather", "tile", "wood"})

VISA_CATEGORIES: tuple[str, ...] = (
    "candle",
    "capsules",
    "cashew",
    "chewinggum",
    "fryum",
    "macaroni1",
    "macaroni2",
    "pcb1",
    "pcb2",
    "pcb3",
    "pcb4",
    "pipe_fryum",
)

MPDD_CATEGORIES: tuple[str, ...] = (
    "bracket_black",
    "bracket_brown",
    "bracket_white",
    "connector",
    "metal_plate",
    "tubes",
)

BTAD_CATEGORIES: tuple[str, ...] = ("01", "02", "03")

LOCO_CATEGORIES: tuple[str, ...] = (
    "breakfast_box",
    "juice_bottle",
    "pushpins",
    "screw_bag",
    "splicing_connectors",
)

ELPV_CATEGORIES: tuple[str, ...] = ("mono", "poly")


def is_texture(category: str) -> bool:
    """True for texture categories (MVTec's five, plus names containing ``texture``)."""
    return category in TEXTURE_CATEGORIES or "texture" in category
