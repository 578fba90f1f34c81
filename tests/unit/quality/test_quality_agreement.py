from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labelvault.annotation.label_schema import parse_label_schema
from labelvault.quality.agreement import (
    Box,
    F1Result,
    agreement_for,
    box_f1,
    cohen_kappa,
    fleiss_kappa,
    gold_accuracy,
    iou,
    pairwise_box_f1,
    pairwise_span_f1,
    span_f1,
)

# Fleiss (1971) as tabulated on Wikipedia: 10 items, 14 raters, 5 categories -> 0.210.
FLEISS_TABLE = [
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
]


def table_to_ratings(table: list[list[int]]) -> list[list[str]]:
    return [[f"c{j}" for j, count in enumerate(row) for _ in range(count)] for row in table]


def test_fleiss_textbook_example() -> None:
    kappa = fleiss_kappa(table_to_ratings(FLEISS_TABLE))
    assert kappa is not None
    assert kappa == pytest.approx(0.2099, abs=5e-4)


def test_cohen_textbook_example() -> None:
    # Wikipedia: 50 items; yes/yes 20, yes/no 5, no/yes 10, no/no 15 -> p_o 0.7, p_e 0.5.
    pairs = [("yes", "yes")] * 20 + [("yes", "no")] * 5 + [("no", "yes")] * 10 + [("no", "no")] * 15
    assert cohen_kappa(pairs) == pytest.approx(0.4)


def test_kappa_undefined_cases() -> None:
    assert cohen_kappa([]) is None
    assert cohen_kappa([("a", "a")] * 5) is None  # p_e == 1
    assert fleiss_kappa([]) is None
    assert fleiss_kappa([["a", "a"], ["a", "a"]]) is None
    assert fleiss_kappa([["a"], ["b"]]) is None  # single ratings are dropped


def test_fleiss_drops_items_with_other_rating_counts() -> None:
    base = [["a", "a", "b"], ["b", "b", "b"], ["a", "a", "a"]]
    assert fleiss_kappa([*base, ["a", "b"], ["a"]]) == fleiss_kappa(base)


def test_fleiss_perfect_and_worst() -> None:
    assert fleiss_kappa([["a", "a"], ["b", "b"], ["c", "c"]]) == 1.0
    assert fleiss_kappa([["a", "b"], ["b", "a"]]) == -1.0


categories = st.sampled_from(["a", "b", "c", "d"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(categories, categories), min_size=1, max_size=60))
def test_cohen_properties(pairs: list[tuple[str, str]]) -> None:
    kappa = cohen_kappa(pairs)
    swapped = cohen_kappa([(b, a) for a, b in pairs])
    assert kappa == swapped
    if kappa is not None:
        assert -1.0 <= kappa <= 1.0
    identical = cohen_kappa([(a, a) for a, _ in pairs])
    if len({a for a, _ in pairs}) > 1:
        assert identical == 1.0
    else:
        assert identical is None


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=2, max_value=6).flatmap(
        lambda n: st.lists(st.lists(categories, min_size=n, max_size=n), min_size=1, max_size=30)
    ),
    st.randoms(use_true_random=False),
)
def test_fleiss_properties(ratings: list[list[str]], rnd: Any) -> None:
    kappa = fleiss_kappa(ratings)
    n = len(ratings[0])
    shuffled = [rnd.sample(item, len(item)) for item in ratings]
    assert fleiss_kappa(shuffled) == pytest.approx(kappa) if kappa is not None else True
    if kappa is not None:
        assert -1.0 / (n - 1) - 1e-9 <= kappa <= 1.0 + 1e-9
    identical = fleiss_kappa([[item[0]] * n for item in ratings])
    if len({item[0] for item in ratings}) > 1:
        assert identical == 1.0
    else:
        assert identical is None


# --- spans --------------------------------------------------------------------------------


def spans(*triples: tuple[int, int, str]) -> dict[str, Any]:
    return {"spans": [{"start": s, "end": e, "label": lab} for s, e, lab in triples]}


def test_span_f1_micro_average() -> None:
    a = [spans((0, 3, "PER"), (5, 9, "ORG")), spans((1, 2, "PER"))]
    b = [spans((0, 3, "PER"), (5, 9, "PER")), spans((1, 2, "PER"), (4, 6, "ORG"))]
    result = span_f1(a, b)
    # tp 2, predicted 4, reference 3
    assert (result.precision, result.recall, result.f1) == pytest.approx((0.5, 2 / 3, 4 / 7))
    assert span_f1(b, a).f1 == result.f1
    assert span_f1([spans()], [spans()]) == F1Result(1.0, 1.0, 1.0)
    assert span_f1([spans((0, 1, "PER"))], [spans()]) == F1Result(0.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        span_f1(a, b[:1])


def test_pairwise_span_f1() -> None:
    x = spans((0, 3, "PER"))
    y = spans((0, 3, "PER"), (4, 5, "ORG"))
    result = pairwise_span_f1([[x, x, y], [x], []])
    assert result is not None
    # pairs: (x,x) tp1 p1 r1; (x,y) tp1 p2 r1; (x,y) tp1 p2 r1 -> f1 = 6 / 8
    assert result.f1 == pytest.approx(0.75)
    assert pairwise_span_f1([[x]]) is None


# --- boxes --------------------------------------------------------------------------------


def box(x: float, y: float, w: float, h: float, label: str = "car") -> dict[str, Any]:
    return {"x": x, "y": y, "w": w, "h": h, "label": label}


def test_iou() -> None:
    assert iou(box(0, 0, 10, 10), box(0, 0, 10, 10)) == 1.0
    assert iou(box(0, 0, 10, 10), box(5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert iou(box(0, 0, 10, 10), box(10, 0, 10, 10)) == 0.0
    assert iou(Box(0, 0, 2, 2, "a"), Box(1, 1, 2, 2, "b")) == pytest.approx(1 / 7)


def test_box_f1_matching_is_one_to_one_and_label_aware() -> None:
    a = [{"boxes": [box(0, 0, 10, 10), box(100, 100, 10, 10, "person")]}]
    b = [{"boxes": [box(1, 0, 10, 10), box(0, 1, 10, 10), box(100, 100, 10, 10, "car")]}]
    result = box_f1(a, b)
    # one car matches (the second candidate cannot reuse it); the person/car pair differs
    assert (result.precision, result.recall, result.f1) == pytest.approx((1 / 3, 0.5, 0.4))
    assert box_f1(a, b, threshold=0.95).f1 == 0.0
    with pytest.raises(ValueError):
        box_f1(a, b, threshold=0)


def test_greedy_prefers_highest_iou() -> None:
    ref = [{"boxes": [box(0, 0, 10, 10), box(4, 0, 10, 10)]}]
    pred = [{"boxes": [box(3, 0, 10, 10)]}]
    # pred overlaps both; it must be matched to the closer ref box (IoU 0.75 vs 0.54)
    assert box_f1(ref, pred).f1 == pytest.approx(2 / 3)
    assert pairwise_box_f1([[ref[0], pred[0]], [ref[0]]]) == box_f1(ref, pred)
    assert pairwise_box_f1([]) is None


# --- gold and dispatch --------------------------------------------------------------------


def test_gold_accuracy() -> None:
    assert gold_accuracy([], "text_classification") is None
    cls = [({"labels": ["a"]}, {"labels": ["a"]}), ({"labels": ["b"]}, {"labels": ["a"]})]
    assert gold_accuracy(cls, "text_classification") == 0.5
    multi = [({"labels": ["a", "b"]}, {"labels": ["b", "a"]})]
    assert gold_accuracy(multi, "image_classification") == 1.0
    five = spans(*[(i, i + 1, "PER") for i in range(5)])
    four = spans(*[(i, i + 1, "PER") for i in range(4)])
    assert gold_accuracy([(four, five)], "text_spans") == 1.0  # F1 8/9 >= 0.8
    assert gold_accuracy([(spans((0, 1, "PER")), five)], "text_spans") == 0.0
    assert gold_accuracy([(four, five)], "text_spans", f1_threshold=1.0) == 0.0
    boxes = ({"boxes": [box(1, 1, 10, 10)]}, {"boxes": [box(0, 0, 10, 10)]})
    assert gold_accuracy([boxes], "image_boxes") == 1.0
    assert gold_accuracy([boxes], "image_boxes", iou_threshold=0.9) == 0.0
    with pytest.raises(ValueError):
        gold_accuracy(cls, "audio")


def test_agreement_for_dispatches() -> None:
    cls = parse_label_schema({"kind": "text_classification", "labels": [f"c{i}" for i in range(5)]})
    by_item = {
        i: [{"labels": [c]} for c in row] for i, row in enumerate(table_to_ratings(FLEISS_TABLE))
    }
    by_item[99] = [{"labels": ["c0"]}]
    out = agreement_for(cls, by_item)
    assert out["metric"] == "fleiss_kappa" and out["items"] == 10
    assert out["value"] == pytest.approx(0.2099, abs=5e-4)

    multi = parse_label_schema(
        {"kind": "image_classification", "labels": ["a", "b", "z"], "multi": True}
    )
    out = agreement_for(
        multi,
        {
            1: [{"labels": ["a"]}, {"labels": ["a"]}],
            2: [{"labels": ["a", "b"]}, {"labels": ["b", "a"]}],
            3: [{"labels": []}, {"labels": []}],
        },
    )
    # label a: 1.0, label b: 1.0, label z: never chosen -> undefined, left out
    assert out == {"metric": "mean_per_label_fleiss_kappa", "value": 1.0, "items": 3}

    span_schema = parse_label_schema({"kind": "text_spans", "labels": ["PER"]})
    out = agreement_for(span_schema, {"a": [spans((0, 1, "PER")), spans((0, 1, "PER"))], "b": []})
    assert out == {"metric": "pairwise_span_f1", "value": 1.0, "items": 1}

    box_schema = parse_label_schema({"kind": "image_boxes", "labels": ["car"]})
    out = agreement_for(box_schema, {})
    assert out == {"metric": "pairwise_box_f1", "value": None, "items": 0}
