"""Inter-annotator agreement and gold accuracy (pure: numbers in, numbers out).

Inputs are already-decrypted results normalised by
``labelvault.annotation.label_schema.validate_result``; outputs are only numbers, so they can
be stored and shown without exposing any annotation content.

Decisions
---------
* **Cohen's kappa** (two identified raters, single label per item) is computed with exact
  integer arithmetic: ``kappa = (N*agree - S) / (N**2 - S)`` with ``S = sum_k a_k * b_k``.
  It is ``None`` (undefined) when there are no items or when chance agreement is 1 (both
  raters used one and the same category for every item).
* **Fleiss' kappa** (any number of interchangeable raters): every item must have the same
  number ``n >= 2`` of ratings. ``n`` is the most common rating count among items with at
  least two ratings (ties go to the larger count); items with another count are dropped and
  not reported in ``items``. ``None`` when no item remains or every rating is the same
  category (expected agreement 1). Also exact integer arithmetic.
* **Multi-label classification** agreement is the mean over labels of the Fleiss' kappa of
  the binary "label chosen / not chosen" ratings (metric ``mean_per_label_fleiss_kappa``).
  Labels for which kappa is undefined (nobody, or everybody, chose them on every item) are
  left out of the mean. ``fleiss_kappa`` itself accepts any hashable category, so callers
  wanting "the whole label set is the category" can pass tuples/frozensets.
* ``agreement_for`` does not know which annotator produced which result, so classification
  always uses Fleiss' kappa (which for two raters equals Scott's pi, not Cohen's kappa).
* **Span F1**: exact match of ``(start, end, label)``; true positives, predicted and reference
  counts are summed over all items (micro average) and ``f1 = 2*tp / (pred + ref)``. When
  both sides are empty everywhere precision, recall and F1 are 1.0 (agreement on "nothing");
  a zero denominator on one side only gives 0.0 for that ratio. F1 is symmetric, precision and
  recall swap when the arguments swap (the first argument is the reference).
* **Box F1**: same-label boxes are matched one-to-one, greedily by descending IoU (ties by
  position), a pair counting only when ``IoU >= threshold`` (``0 < threshold <= 1``). scipy
  is not a dependency, so no Hungarian matching; greedy is standard for detection metrics.
* **Pairwise** span/box F1 over annotators: for each item, every unordered pair of its
  results is compared; counts are summed over all (item, pair) combinations (micro average,
  so items with more annotators weigh more). Items with fewer than two results are skipped.
* **Gold accuracy**: share of (result, gold) pairs counted correct: classification needs the
  exact same label set; spans/boxes need per-item F1 >= ``f1_threshold`` (default 0.8, boxes
  matched at ``iou_threshold`` 0.5). ``None`` when there are no pairs.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

from labelvault.annotation.label_schema import LabelSchema, Result, result_summary_label

H = TypeVar("H", bound=Hashable)
K = TypeVar("K", bound=Hashable)

SpanKey = tuple[int, int, str]
_Compare = Callable[[Result, Result], "_Counts"]


class Box(NamedTuple):
    x: float
    y: float
    w: float
    h: float
    label: str


@dataclass(frozen=True, slots=True)
class F1Result:
    precision: float
    recall: float
    f1: float


@dataclass(frozen=True, slots=True)
class _Counts:
    tp: int = 0
    pred: int = 0
    ref: int = 0

    def __add__(self, other: _Counts) -> _Counts:
        return _Counts(self.tp + other.tp, self.pred + other.pred, self.ref + other.ref)

    def result(self) -> F1Result:
        precision = self.tp / self.pred if self.pred else (1.0 if self.ref == 0 else 0.0)
        recall = self.tp / self.ref if self.ref else (1.0 if self.pred == 0 else 0.0)
        total = self.pred + self.ref
        f1 = 2 * self.tp / total if total else 1.0
        return F1Result(precision, recall, f1)


# --- kappas -------------------------------------------------------------------------------


def cohen_kappa(pairs: Sequence[tuple[H, H]]) -> float | None:
    """Cohen's kappa of two raters; ``pairs[i]`` is (rater A's, rater B's) category of item i."""
    n = len(pairs)
    if n == 0:
        return None
    agree = sum(1 for a, b in pairs if a == b)
    count_a = Counter(a for a, _ in pairs)
    count_b = Counter(b for _, b in pairs)
    chance = sum(count * count_b.get(cat, 0) for cat, count in count_a.items())
    denominator = n * n - chance
    if denominator == 0:
        return None
    return (n * agree - chance) / denominator


def _select_items(ratings: Iterable[Sequence[H]]) -> list[Sequence[H]]:
    usable = [r for r in ratings if len(r) >= 2]
    if not usable:
        return []
    counts = Counter(len(r) for r in usable)
    n = max(counts, key=lambda size: (counts[size], size))
    return [r for r in usable if len(r) == n]


def _fleiss_selected(items: Sequence[Sequence[H]]) -> float | None:
    if not items:
        return None
    n = len(items[0])
    total = len(items) * n
    per_category: Counter[H] = Counter()
    squares = 0
    for item in items:
        counts = Counter(item)
        per_category.update(counts)
        squares += sum(c * c for c in counts.values())
    agreement = squares - total  # = T * (n - 1) * mean(P_i)
    chance = sum(c * c for c in per_category.values())  # = T**2 * P_e
    denominator = (n - 1) * (total * total - chance)
    if denominator == 0:
        return None
    return (agreement * total - chance * (n - 1)) / denominator


def fleiss_kappa(ratings: Sequence[Sequence[H]]) -> float | None:
    """Fleiss' kappa; ``ratings[i]`` holds the categories the raters gave item i.

    Items whose rating count differs from the most common one (or is below 2) are dropped.
    """
    return _fleiss_selected(_select_items(ratings))


# --- spans --------------------------------------------------------------------------------


def span_keys(result: Result) -> frozenset[SpanKey]:
    return frozenset((s["start"], s["end"], s["label"]) for s in result["spans"])


def _span_counts(ref: Result, pred: Result) -> _Counts:
    a, b = span_keys(ref), span_keys(pred)
    return _Counts(len(a & b), len(b), len(a))


def span_f1(a: Sequence[Result], b: Sequence[Result]) -> F1Result:
    """Micro-averaged exact-match span F1 of annotator ``b`` against annotator ``a``.

    ``a[i]`` and ``b[i]`` are the two normalised span results for item i.
    """
    if len(a) != len(b):
        raise ValueError("both annotators must have one result per item")
    return sum((_span_counts(x, y) for x, y in zip(a, b, strict=True)), _Counts()).result()


def _pairwise(items: Iterable[Sequence[Result]], compare: _Compare) -> tuple[F1Result | None, int]:
    total = _Counts()
    used = 0
    for results in items:
        if len(results) < 2:
            continue
        used += 1
        for x, y in itertools.combinations(results, 2):
            total = total + compare(x, y)
    return (total.result() if used else None), used


def pairwise_span_f1(items: Iterable[Sequence[Result]]) -> F1Result | None:
    """Span F1 over every pair of results of each item; None when no item has two results."""
    return _pairwise(items, _span_counts)[0]


# --- boxes --------------------------------------------------------------------------------


def _as_box(box: Box | Mapping[str, Any]) -> Box:
    if isinstance(box, Box):
        return box
    return Box(box["x"], box["y"], box["w"], box["h"], box["label"])


def boxes_of(result: Result) -> list[Box]:
    return [_as_box(b) for b in result["boxes"]]


def iou(box_a: Box | Mapping[str, Any], box_b: Box | Mapping[str, Any]) -> float:
    """Intersection over union of two boxes (labels are ignored)."""
    a, b = _as_box(box_a), _as_box(box_b)
    ix = min(a.x + a.w, b.x + b.w) - max(a.x, b.x)
    iy = min(a.y + a.h, b.y + b.h) - max(a.y, b.y)
    if ix <= 0 or iy <= 0:
        return 0.0
    inter = ix * iy
    union = a.w * a.h + b.w * b.h - inter
    return float(inter / union) if union > 0 else 0.0


def _check_threshold(threshold: float) -> None:
    if not 0 < threshold <= 1:
        raise ValueError("threshold must be in (0, 1]")


def _box_matches(ref: Sequence[Box], pred: Sequence[Box], threshold: float) -> int:
    by_label: dict[str, list[int]] = {}
    for j, box in enumerate(pred):
        by_label.setdefault(box.label, []).append(j)
    candidates: list[tuple[float, int, int]] = []
    for i, box in enumerate(ref):
        for j in by_label.get(box.label, ()):
            overlap = iou(box, pred[j])
            if overlap >= threshold:
                candidates.append((-overlap, i, j))
    candidates.sort()
    used_ref: set[int] = set()
    used_pred: set[int] = set()
    for _, i, j in candidates:
        if i not in used_ref and j not in used_pred:
            used_ref.add(i)
            used_pred.add(j)
    return len(used_ref)


def _box_counter(threshold: float) -> _Compare:
    def counts(ref: Result, pred: Result) -> _Counts:
        a, b = boxes_of(ref), boxes_of(pred)
        return _Counts(_box_matches(a, b, threshold), len(b), len(a))

    return counts


def box_f1(a: Sequence[Result], b: Sequence[Result], threshold: float = 0.5) -> F1Result:
    """Micro-averaged box F1 of annotator ``b`` against ``a`` (one result per item each)."""
    _check_threshold(threshold)
    if len(a) != len(b):
        raise ValueError("both annotators must have one result per item")
    counter = _box_counter(threshold)
    return sum((counter(x, y) for x, y in zip(a, b, strict=True)), _Counts()).result()


def pairwise_box_f1(items: Iterable[Sequence[Result]], threshold: float = 0.5) -> F1Result | None:
    """Box F1 over every pair of results of each item; None when no item has two results."""
    _check_threshold(threshold)
    return _pairwise(items, _box_counter(threshold))[0]


# --- gold and dispatch --------------------------------------------------------------------


def gold_accuracy(
    pairs: Sequence[tuple[Result, Result]],
    kind: str,
    *,
    f1_threshold: float = 0.8,
    iou_threshold: float = 0.5,
) -> float | None:
    """Share of (result, gold) pairs that count as correct for a schema ``kind``."""
    if not pairs:
        return None
    _check_threshold(iou_threshold)
    correct = 0
    for result, gold in pairs:
        if kind in ("text_classification", "image_classification"):
            ok = set(result["labels"]) == set(gold["labels"])
        elif kind == "text_spans":
            ok = _span_counts(gold, result).result().f1 >= f1_threshold
        elif kind == "image_boxes":
            ok = _box_counter(iou_threshold)(gold, result).result().f1 >= f1_threshold
        else:
            raise ValueError("unknown schema kind")
        correct += ok
    return correct / len(pairs)


def agreement_for(
    schema: LabelSchema,
    annotations_by_item: Mapping[K, Sequence[Result]],
    *,
    iou_threshold: float = 0.5,
) -> dict[str, Any]:
    """The agreement metric suited to ``schema``: ``{"metric", "value", "items"}``.

    ``value`` is None when undefined; ``items`` counts the items that entered the metric.
    """
    groups = list(annotations_by_item.values())
    if schema.is_classification:
        if schema.multi:
            items = _select_items(groups)
            kappas = [
                k
                for label in schema.labels
                if (k := _fleiss_selected([[label in r["labels"] for r in rs] for rs in items]))
                is not None
            ]
            value = sum(kappas) / len(kappas) if kappas else None
            return {"metric": "mean_per_label_fleiss_kappa", "value": value, "items": len(items)}
        categories = _select_items([[result_summary_label(schema, r) for r in rs] for rs in groups])
        return {
            "metric": "fleiss_kappa",
            "value": _fleiss_selected(categories),
            "items": len(categories),
        }
    if schema.kind == "text_spans":
        f1, used = _pairwise(groups, _span_counts)
        return {"metric": "pairwise_span_f1", "value": f1.f1 if f1 else None, "items": used}
    _check_threshold(iou_threshold)
    f1, used = _pairwise(groups, _box_counter(iou_threshold))
    return {"metric": "pairwise_box_f1", "value": f1.f1 if f1 else None, "items": used}
