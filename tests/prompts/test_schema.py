"""The MFSC schema: valid shapes load, malformed ones fail naming the field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from anomalign.errors import ConfigError
from anomalign.prompts.captions import (
    CaptionError,
    CategoryCaption,
    consistency_warnings,
    load_caption_file,
    parse_caption,
)


def _error(data: Any) -> str:
    with pytest.raises(CaptionError) as info:
        parse_caption(data, source="test.json")
    return str(info.value)


def test_official_list_shape_loads(caption_data):
    caption = parse_caption(caption_data)
    assert caption.category == "widget"
    assert caption.foreground == "widget"
    assert caption.num_entities == 2
    assert caption.level2.numbers == ("1", "2")
    assert caption.level3.colors == ("teal", "silver")


def test_plain_object_levels_and_python_names_load(caption_data):
    plain = {**caption_data, **{k: caption_data[k][0] for k in ("Level_1", "Level_2", "Level_3")}}
    assert parse_caption(plain) == parse_caption(caption_data)
    by_name = CategoryCaption(
        level1=plain["Level_1"],
        level2={"entities": ["a"], "numbers": ["1"], "locations": ["top"], "relation": "r"},
        level3={
            "directions": ["up"],
            "colors": ["red"],
            "textures": ["smooth"],
            "shapes": ["round"],
            "entity_captions": ["a at the top"],
        },
        caption="a widget",
        defects=["{} with a dent"],
    )
    assert by_name.category is None and by_name.num_entities == 1


def test_official_entry_without_our_fields_needs_only_defects(caption_data):
    del caption_data["category"]
    del caption_data["defects"]
    assert "defects: required field is missing" in _error(caption_data)
    caption_data["defects"] = ["{} with a crack"]
    assert parse_caption(caption_data).category is None


def test_round_trip_json_is_stable(caption_data):
    caption = parse_caption(caption_data)
    again = parse_caption(json.loads(caption.to_json()))
    assert again == caption
    assert again.to_json() == caption.to_json()
    assert list(json.loads(caption.to_json())) == [
        "category",
        "Level_1",
        "Level_2",
        "Level_3",
        "caption",
        "defects",
    ]


def test_integer_numbers_and_whitespace_are_normalised(caption_data):
    caption_data["Level_2"][0]["number"] = [1, " Multiple "]
    caption_data["caption"] = "  A   teal widget  "
    caption_data["category"] = "Metal Nut"
    caption = parse_caption(caption_data)
    assert caption.level2.numbers == ("1", "multiple")
    assert caption.caption == "A teal widget"
    assert caption.category == "metal_nut"


def test_per_entity_length_mismatch_names_field_and_counts(caption_data):
    caption_data["Level_2"][0]["location"] = ["center"]
    caption_data["Level_3"][0]["shape"] = ["square", "round", "oval"]
    message = _error(caption_data)
    assert "test.json" in message
    assert "Level_2.location: expected 2 entries (one per entity), got 1" in message
    assert "Level_3.shape: expected 2 entries (one per entity), got 3" in message


@pytest.mark.parametrize("count", [0, 6])
def test_entity_count_bounds(caption_data, count):
    level2, level3 = caption_data["Level_2"][0], caption_data["Level_3"][0]
    for key in ("entity", "number", "location"):
        level2[key] = [f"{key}{i}" if key != "number" else "1" for i in range(count)]
    for key in ("direction", "color", "texture", "shape", "entity_caption"):
        level3[key] = [f"{key}{i}" for i in range(count)]
    assert f"Level_2.entity: expected 1 to 5 entities, got {count}" in _error(caption_data)


def test_empty_strings_are_rejected_with_index(caption_data):
    caption_data["Level_3"][0]["color"][1] = "   "
    caption_data["Level_1"][0]["background"] = ""
    message = _error(caption_data)
    assert "Level_3.color[1]: must be a non-empty string" in message
    assert "Level_1.background: must be a non-empty string" in message


def test_non_string_entries_are_rejected(caption_data):
    caption_data["Level_3"][0]["texture"][0] = 3
    assert "Level_3.texture[0]:" in _error(caption_data)


def test_unknown_number_is_rejected(caption_data):
    caption_data["Level_2"][0]["number"] = ["1", "a few"]
    message = _error(caption_data)
    assert "Level_2.number[1]: 'a few' is not a count" in message
    caption_data["Level_2"][0]["number"] = ["0", "2"]
    assert "Level_2.number[0]" in _error(caption_data)


@pytest.mark.parametrize(
    "phrase", ["with a dent", "{} with {} dents", "{} with a {dent}", "{0} bent"]
)
def test_defect_phrase_needs_exactly_one_placeholder(caption_data, phrase):
    caption_data["defects"][1] = phrase
    message = _error(caption_data)
    assert "defects[1]:" in message and "exactly one '{}'" in message


def test_no_defects_is_rejected(caption_data):
    caption_data["defects"] = []
    assert "defects: expected at least one defect phrase" in _error(caption_data)


def test_missing_and_unknown_fields(caption_data):
    del caption_data["Level_3"][0]["entity_caption"]
    caption_data["Level_1"][0]["foregorund"] = "typo"
    message = _error(caption_data)
    assert "Level_3.entity_caption: required field is missing" in message
    assert "Level_1.foregorund: unknown field" in message


def test_level_list_must_hold_one_object(caption_data):
    caption_data["Level_1"] = caption_data["Level_1"] * 2
    assert "Level_1: expected an object, or a list holding exactly one object" in _error(
        caption_data
    )


def test_duplicate_entities_are_rejected(caption_data):
    caption_data["Level_2"][0]["entity"] = ["screws", "screws"]
    assert "Level_2.entity: entity names must be distinct" in _error(caption_data)


def test_top_level_must_be_an_object():
    assert "expected a JSON object" in _error(["not", "an", "object"])


def test_caption_error_is_a_config_error():
    assert issubclass(CaptionError, ConfigError)


def test_load_caption_file_errors_name_the_file(tmp_path, caption_data):
    path = tmp_path / "mine.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(CaptionError, match=r"mine\.json.*not valid JSON \(line 1"):
        load_caption_file(path)
    caption_data["Level_2"][0]["number"] = ["1"]
    path.write_text(json.dumps(caption_data), encoding="utf-8")
    with pytest.raises(CaptionError, match=r"(?s)mine\.json.*Level_2\.number: expected 2"):
        load_caption_file(path)
    with pytest.raises(CaptionError, match="does not exist"):
        load_caption_file(tmp_path / "absent.json")


def test_consistency_warnings(caption_data):
    assert consistency_warnings(parse_caption(caption_data)) == []
    caption_data["caption"] = "A teal square thing."
    caption_data["Level_3"][0]["entity_caption"][1] = "Two silver bolts"
    warnings = consistency_warnings(parse_caption(caption_data))
    assert any(w.startswith("caption: does not mention the foreground") for w in warnings)
    assert "Level_3.entity_caption[1]: does not mention its entity 'screws'" in warnings
    assert "Level_3.entity_caption[1]: does not mention its location 'corners'" in warnings
