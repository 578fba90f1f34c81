from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labelvault.annotation.label_schema import (
    LabelSchema,
    parse_label_schema,
    result_summary_label,
    validate_result,
)
from labelvault.kernel.errors import InvalidInputError

CLS = parse_label_schema({"kind": "text_classification", "labels": ["spam", "ham"]})
MULTI = parse_label_schema(
    {"kind": "image_classification", "labels": ["a", "b", "c"], "multi": True}
)
SPANS = parse_label_schema({"kind": "text_spans", "labels": ["PER", "ORG"]})
BOXES = parse_label_schema({"kind": "image_boxes", "labels": ["car", "person"]})


def field_of(fn: Any, *args: Any, **kwargs: Any) -> str | None:
    with pytest.raises(InvalidInputError) as info:
        fn(*args, **kwargs)
    assert info.value.status == 422
    return info.value.field


# --- schemas ------------------------------------------------------------------------------


def test_parse_valid_schemas() -> None:
    assert LabelSchema("text_classification", ("spam", "ham"), False) == CLS
    assert MULTI.multi and MULTI.media == "image" and MULTI.is_classification
    assert SPANS.media == "text" and not SPANS.multi
    assert BOXES.to_json() == {"kind": "image_boxes", "labels": ["car", "person"]}
    assert CLS.to_json() == {
        "kind": "text_classification",
        "labels": ["spam", "ham"],
        "multi": False,
    }
    assert parse_label_schema(MULTI.to_json()) == MULTI
    assert CLS.label_index("ham") == 1 and CLS.label_index("eggs") is None


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ([], "schema"),
        ({"labels": ["a"]}, "kind"),
        ({"kind": "audio", "labels": ["a"]}, "kind"),
        ({"kind": 3, "labels": ["a"]}, "kind"),
        ({"kind": "text_spans"}, "labels"),
        ({"kind": "text_spans", "labels": "abc"}, "labels"),
        ({"kind": "text_spans", "labels": []}, "labels"),
        ({"kind": "text_spans", "labels": [str(i) for i in range(201)]}, "labels"),
        ({"kind": "text_spans", "labels": ["a", "b", "c", ""]}, "labels[3]"),
        ({"kind": "text_spans", "labels": ["a", "   "]}, "labels[1]"),
        ({"kind": "text_spans", "labels": ["a", 1]}, "labels[1]"),
        ({"kind": "text_spans", "labels": ["a", "x" * 101]}, "labels[1]"),
        ({"kind": "text_spans", "labels": ["a", "b\nc"]}, "labels[1]"),
        ({"kind": "text_spans", "labels": ["a", "b\x00"]}, "labels[1]"),
        ({"kind": "text_spans", "labels": ["a", "\ud800"]}, "labels[1]"),
        ({"kind": "text_spans", "labels": ["a", "a"]}, "labels[1]"),
        ({"kind": "text_spans", "labels": ["é", "e\u0301"]}, "labels[1]"),
        ({"kind": "text_spans", "labels": ["a"], "multi": False}, "multi"),
        ({"kind": "image_boxes", "labels": ["a"], "multi": True}, "multi"),
        ({"kind": "text_classification", "labels": ["a"], "multi": 1}, "multi"),
        ({"kind": "text_classification", "labels": ["a"], "colour": 1}, "colour"),
        ({"kind": "text_classification", "labels": ["a"], "<script>": 1}, "schema"),
    ],
)
def test_parse_rejects(doc: object, field: str) -> None:
    assert field_of(parse_label_schema, doc) == field


def test_schema_error_messages_name_the_field() -> None:
    with pytest.raises(InvalidInputError) as info:
        parse_label_schema({"kind": "text_spans", "labels": ["a", "b", "c", ""]})
    assert info.value.message.startswith("labels[3]:")


# --- classification -----------------------------------------------------------------------


def test_classification_results() -> None:
    assert validate_result(CLS, {"labels": ["ham"]}) == {"labels": ["ham"]}
    assert validate_result(MULTI, {"labels": ["c", "a"]}) == {"labels": ["a", "c"]}
    assert validate_result(MULTI, {"labels": []}) == {"labels": []}
    assert result_summary_label(CLS, {"labels": ["spam"]}) == "spam"
    assert result_summary_label(MULTI, {"labels": ["a", "c"]}) == ("a", "c")
    with pytest.raises(ValueError):
        result_summary_label(SPANS, {"spans": []})


@pytest.mark.parametrize(
    ("schema", "result", "field"),
    [
        (CLS, None, "result"),
        (CLS, ["spam"], "result"),
        (CLS, {}, "labels"),
        (CLS, {"labels": "spam"}, "labels"),
        (CLS, {"labels": []}, "labels"),
        (CLS, {"labels": ["spam", "ham"]}, "labels"),
        (CLS, {"labels": ["eggs"]}, "labels[0]"),
        (CLS, {"labels": [True]}, "labels[0]"),
        (CLS, {"labels": [["spam"]]}, "labels[0]"),
        (CLS, {"labels": ["spam"], "note": "x"}, "note"),
        (MULTI, {"labels": ["a", "a"]}, "labels[1]"),
        (MULTI, {"labels": ["a", "b", "c", "a"]}, "labels"),
    ],
)
def test_classification_rejects(schema: LabelSchema, result: object, field: str) -> None:
    assert field_of(validate_result, schema, result) == field


# --- spans --------------------------------------------------------------------------------

TEXT = "Ada Lovelace met 🙂 Babbage"


def test_spans_sorted_and_code_point_offsets() -> None:
    result = {
        "spans": [
            {"label": "PER", "start": 19, "end": 26},
            {"start": 0, "end": 12, "label": "PER"},
            {"start": 0, "end": 3, "label": "ORG"},
            {"start": 0, "end": 3, "label": "PER"},
        ]
    }
    out = validate_result(SPANS, result, text=TEXT)
    assert [(s["start"], s["end"], s["label"]) for s in out["spans"]] == [
        (0, 3, "ORG"),
        (0, 3, "PER"),
        (0, 12, "PER"),
        (19, 26, "PER"),
    ]
    assert TEXT[19:26] == "Babbage"  # code points: the emoji counts as one
    # a UTF-8 byte offset for "Babbage" (22..29) runs past the end of the text
    assert (
        field_of(
            validate_result, SPANS, {"spans": [{"start": 22, "end": 29, "label": "PER"}]}, text=TEXT
        )
        == "spans[0].end"
    )
    assert validate_result(SPANS, {"spans": []}, text="") == {"spans": []}


@pytest.mark.parametrize(
    ("spans", "field"),
    [
        ("x", "spans"),
        ([1], "spans[0]"),
        ([{"start": 0, "end": 1}], "spans[0].label"),
        ([{"end": 1, "label": "PER"}], "spans[0].start"),
        ([{"start": 0, "label": "PER"}], "spans[0].end"),
        ([{"start": True, "end": 1, "label": "PER"}], "spans[0].start"),
        ([{"start": 0, "end": 1.0, "label": "PER"}], "spans[0].end"),
        ([{"start": 0, "end": "1", "label": "PER"}], "spans[0].end"),
        ([{"start": -1, "end": 1, "label": "PER"}], "spans[0].start"),
        ([{"start": 3, "end": 3, "label": "PER"}], "spans[0].end"),
        ([{"start": 4, "end": 3, "label": "PER"}], "spans[0].end"),
        ([{"start": 0, "end": 10**100, "label": "PER"}], "spans[0].end"),
        ([{"start": 10**100, "end": 10**101, "label": "PER"}], "spans[0].start"),
        ([{"start": 0, "end": 1, "label": "LOC"}], "spans[0].label"),
        ([{"start": 0, "end": 1, "label": "PER", "extra": {"deep": [[[[]]]]}}], "spans[0].extra"),
        ([{"start": 0, "end": 1, "label": "PER"}] * 2, "spans[1]"),
        (
            [{"start": 0, "end": 1, "label": "PER"}, {"start": 0, "end": 1, "label": "PER", 5: 1}],
            "spans[1]",
        ),
    ],
)
def test_spans_reject(spans: object, field: str) -> None:
    assert field_of(validate_result, SPANS, {"spans": spans}, text=TEXT) == field


def test_spans_limits_and_context() -> None:
    many = [{"start": 0, "end": 1, "label": "PER"}] * 10_001
    assert field_of(validate_result, SPANS, {"spans": many}, text=TEXT) == "spans"
    with pytest.raises(ValueError):
        validate_result(SPANS, {"spans": []})


# --- boxes --------------------------------------------------------------------------------


def test_boxes_valid() -> None:
    out = validate_result(
        BOXES,
        {
            "boxes": [
                {"x": 10, "y": 20, "w": 30, "h": 40, "label": "car"},
                {"x": 0.5, "y": 0, "w": 99.5, "h": 50, "label": "person"},
            ]
        },
        image_size=(100, 60),
    )
    assert out["boxes"][0] == {"x": 0.5, "y": 0, "w": 99.5, "h": 50, "label": "person"}
    assert out["boxes"][1]["x"] == 10 and isinstance(out["boxes"][1]["x"], int)


BOX = {"x": 10, "y": 20, "w": 30, "h": 40, "label": "car"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"x": True}, "boxes[0].x"),
        ({"x": math.nan}, "boxes[0].x"),
        ({"y": math.inf}, "boxes[0].y"),
        ({"w": -math.inf}, "boxes[0].w"),
        ({"x": "10"}, "boxes[0].x"),
        ({"x": None}, "boxes[0].x"),
        ({"x": -1}, "boxes[0].x"),
        ({"w": 0}, "boxes[0].w"),
        ({"h": -5}, "boxes[0].h"),
        ({"w": 91}, "boxes[0].w"),
        ({"h": 61}, "boxes[0].h"),
        ({"x": 10**400}, "boxes[0].x"),
        ({"w": 10**400}, "boxes[0].w"),
        ({"x": 1e308, "w": 1e308}, "boxes[0].x"),
        ({"label": "bus"}, "boxes[0].label"),
        ({"label": None}, "boxes[0].label"),
        ({"z": 1}, "boxes[0].z"),
    ],
)
def test_boxes_reject(change: dict[str, Any], field: str) -> None:
    box = {**BOX, **change}
    assert field_of(validate_result, BOXES, {"boxes": [box]}, image_size=(100, 80)) == field


def test_boxes_missing_duplicate_and_context() -> None:
    missing = {k: v for k, v in BOX.items() if k != "h"}
    assert field_of(validate_result, BOXES, {"boxes": [missing]}, image_size=(100, 80)) == (
        "boxes[0].h"
    )
    assert field_of(validate_result, BOXES, {"boxes": [BOX, BOX]}, image_size=(100, 80)) == (
        "boxes[1]"
    )
    assert field_of(validate_result, BOXES, {"boxes": [BOX] * 10_001}, image_size=(100, 80)) == (
        "boxes"
    )
    with pytest.raises(ValueError):
        validate_result(BOXES, {"boxes": []})


# --- hostile results ----------------------------------------------------------------------

# Values are never echoed; foreign keys are named only when they are short identifiers.
MARKER = "zq-marker-zq"
junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8) | st.just(MARKER),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["x", "y", "w", "h", "start", "end", "label", MARKER]),
            inner,
            max_size=6,
        )
    ),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None)
@given(
    schema=st.sampled_from([CLS, MULTI, SPANS, BOXES]),
    result=st.one_of(
        junk,
        st.fixed_dictionaries({"labels": st.lists(junk, max_size=4)}),
        st.fixed_dictionaries({"spans": st.lists(junk, max_size=4)}),
        st.fixed_dictionaries({"boxes": st.lists(junk, max_size=4)}),
    ),
)
def test_hostile_results_only_raise_invalid_input(schema: LabelSchema, result: object) -> None:
    try:
        out = validate_result(schema, result, text=TEXT, image_size=(50, 50))
    except InvalidInputError as exc:
        assert MARKER not in exc.message
        assert exc.field
        return
    # whatever was accepted is stable under re-validation
    assert validate_result(schema, out, text=TEXT, image_size=(50, 50)) == out


def test_deeply_nested_junk() -> None:
    deep: Any = []
    for _ in range(50_000):
        deep = [deep]
    assert field_of(validate_result, SPANS, {"spans": [deep]}, text=TEXT) == "spans[0]"
    assert field_of(validate_result, CLS, deep) == "result"
