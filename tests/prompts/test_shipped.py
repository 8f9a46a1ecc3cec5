"""The captions that ship with the package, their store and the derived vocabularies."""

from __future__ import annotations

import json

import pytest

from anomalign.prompts.captions import (
    CaptionError,
    caption_hash,
    consistency_warnings,
    derive_vocabularies,
    list_shipped,
    load_shipped,
    parse_caption,
    resolve_caption,
    shipped_dataset,
    shipped_vocabularies,
)
from anomalign.prompts.captions.vocab import attribute_negatives

MVTEC = [
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
]
VISA = [
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
]


SYNTHETIC = ["synth_object", "synth_texture"]  # the synthetic generator's categories


def test_all_27_categories_ship():
    assert list_shipped("mvtec") == tuple(MVTEC)
    assert list_shipped("visa") == tuple(VISA)
    assert list_shipped("synthetic") == tuple(SYNTHETIC)
    assert list_shipped() == tuple(MVTEC + VISA + SYNTHETIC)
    with pytest.raises(CaptionError, match="Unknown caption dataset"):
        list_shipped("mvtec3d")


@pytest.mark.parametrize("name", MVTEC + VISA)
def test_shipped_caption_is_valid_and_consistent(name):
    caption = load_shipped(name)
    assert caption.category == name
    assert 1 <= caption.num_entities <= 5
    assert 3 <= len(caption.defects) <= 8
    assert len(set(caption.defects)) == len(caption.defects)
    for phrase in caption.defects:
        assert caption.foreground in phrase.format(caption.foreground)
    assert consistency_warnings(caption) == []


def test_lookup_accepts_spellings_and_dataset_prefix():
    assert load_shipped("Metal Nut") == load_shipped("metal_nut")
    assert load_shipped("visa/pcb3").num_entities == 5
    assert shipped_dataset("macaroni1") == "visa"
    assert load_shipped("macaroni1").level2.locations == (
        "top-left",
        "top-right",
        "bottom-left",
        "bottom-right",
    )
    with pytest.raises(CaptionError, match="No shipped caption for category 'mvtec/pcb1'"):
        load_shipped("mvtec/pcb1")
    with pytest.raises(CaptionError, match="Pass a caption file path"):
        load_shipped("gearbox")


def test_resolve_caption_from_name_path_or_object(tmp_path):
    shipped = load_shipped("bottle")
    path = tmp_path / "bottle_copy.json"
    path.write_text(shipped.to_json(), encoding="utf-8")
    assert resolve_caption(path) == shipped
    assert resolve_caption(str(path)) == shipped
    assert resolve_caption("bottle") is shipped
    assert resolve_caption(shipped) is shipped


def test_caption_hash_is_stable_and_content_sensitive(caption_data):
    caption = parse_caption(caption_data)
    plain = {**caption_data, **{k: caption_data[k][0] for k in ("Level_1", "Level_2", "Level_3")}}
    assert caption_hash(parse_caption(plain)) == caption_hash(caption)
    assert len(caption_hash(caption)) == 64
    caption_data["defects"].append("{} with rust")
    assert caption_hash(parse_caption(caption_data)) != caption_hash(caption)
    hashes = {caption_hash(load_shipped(name)) for name in list_shipped()}
    assert len(hashes) == 27 + len(SYNTHETIC)


def test_vocabularies_cover_every_shipped_value():
    vocab = shipped_vocabularies()
    for name in list_shipped():
        caption = load_shipped(name)
        assert set(caption.level3.colors) <= set(vocab.colors)
        assert set(caption.level3.textures) <= set(vocab.textures)
        assert set(caption.level3.shapes) <= set(vocab.shapes)
        assert set(caption.level2.locations) <= set(vocab.locations)
        assert set(caption.level2.numbers) <= set(vocab.numbers)
    for values in vocab.as_dict().values():
        assert len(values) == len(set(values)) > 0
    assert vocab.numbers[-1] == "multiple"


def test_vocabularies_are_derived_not_hand_kept(caption_data):
    # "teal" appears in no shipped caption: adding one caption that uses it adds it.
    extra = parse_caption(caption_data)
    shipped = [load_shipped(name) for name in list_shipped()]
    assert "teal" not in shipped_vocabularies().colors
    vocab = derive_vocabularies([*shipped, extra])
    assert "teal" in vocab.colors
    assert "corners" in vocab.locations and "2" in vocab.numbers
    assert vocab.numbers.index("2") < vocab.numbers.index("3")
    # A colour used by exactly one shipped caption is present.
    uses = {}
    for caption in shipped:
        for color in set(caption.level3.colors):
            uses.setdefault(color, []).append(caption.category)
    singles = [color for color, names in uses.items() if len(names) == 1]
    assert singles and all(color in vocab.colors for color in singles)


def test_vocabularies_are_deterministic_and_normalised(caption_data):
    shipped = [load_shipped(name) for name in list_shipped()]
    assert derive_vocabularies(shipped) == derive_vocabularies(reversed(shipped))
    assert derive_vocabularies(shipped) == shipped_vocabularies()
    caption_data["Level_3"][0]["color"] = ["Teal", "  teal "]
    vocab = derive_vocabularies([parse_caption(caption_data)])
    assert vocab.colors == ("teal",)
    assert list(vocab.textures) == sorted(vocab.textures)


def test_attribute_negatives_exclude_the_class_own_values():
    vocab = shipped_vocabularies()
    caption = load_shipped("transistor")
    negatives = attribute_negatives(caption, vocab)
    assert "black" not in negatives.colors and "black" in vocab.colors
    assert "center" not in negatives.locations
    assert set(negatives.colors) | set(caption.level3.colors) == set(vocab.colors)
    assert negatives.textures and negatives.shapes


def test_data_files_are_in_canonical_form():
    from importlib import resources

    root = resources.files("anomalign.prompts.captions").joinpath("data")
    for dataset in ("mvtec", "visa"):
        for entry in root.joinpath(dataset).iterdir():
            text = entry.read_text(encoding="utf-8")
            assert text == parse_caption(json.loads(text)).to_json(), entry.name
