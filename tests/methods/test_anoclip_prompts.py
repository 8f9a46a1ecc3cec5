"""AnoCLIP's state prompts: counts, texts, domain families and the two grammar modes."""

from __future__ import annotations

from anomalign.prompts.state_prompts import (
    build_state_prompts,
    domain_for_category,
    object_name_for_category,
)


def test_counts_and_order() -> None:
    prompts = build_state_prompts("bottle", "object")
    assert len(prompts.normal) == len(prompts.abnormal) == 462
    assert len(set(prompts.normal)) == 462
    # Patterns outer, states inner: the first 7 sentences share the first pattern.
    assert prompts.normal[0] == "a cropped industrial photo of the normal bottle"
    assert prompts.normal[6] == "a cropped industrial photo of the bottle without damage"
    assert prompts.abnormal[7] == "a cropped industrial photo of a damaged bottle"
    assert (
        prompts.normal[-1]
        == "a manufacturing image of a bottle without damage for anomaly detection"
    )
    assert "an industrial image of the small perfect bottle" in prompts.normal
    assert sum("manufacturing image" in s for s in prompts.abnormal) == 154


def test_texture_family_uses_surface_picture() -> None:
    prompts = build_state_prompts("carpet", "texture")
    assert sum("textural photo" in s for s in prompts.normal) == 154
    assert sum("surface picture" in s for s in prompts.normal) == 154
    assert not any("surface photo" in s or "manufacturing" in s for s in prompts.normal)


def test_verbatim_vs_grammatical_articles() -> None:
    verbatim = build_state_prompts("bottle", "object", grammatical=False)
    fixed = build_state_prompts("bottle", "object", grammatical=True)
    assert "an industrial photo of a abnormal bottle" in verbatim.abnormal
    assert "an industrial photo of an abnormal bottle" in fixed.abnormal
    assert "an industrial photo of an unblemished bottle" in fixed.normal
    assert not any(" a abnormal" in s or " a imperfect" in s for s in fixed.abnormal)
    assert len(fixed.abnormal) == 462


def test_category_mapping() -> None:
    assert domain_for_category("wood") == "texture"
    assert domain_for_category("metal_nut") == "object"
    assert domain_for_category(None) == "object"
    assert object_name_for_category("macaroni2") == "macaroni"
    assert object_name_for_category("metal_nut") == "metal_nut"
    assert object_name_for_category(None) == "object"
