"""Label schemas and validation of annotation results (pure: no database, no I/O).

A schema is a small JSON object::

    {"kind": "text_classification", "labels": ["spam", "ham"], "multi": false}
    {"kind": "text_spans", "labels": ["PER", "ORG"]}
    {"kind": "image_classification", "labels": ["cat", "dog"], "multi": true}
    {"kind": "image_boxes", "labels": ["car", "person"]}

``parse_label_schema`` validates it once, when the project is configured; ``validate_result``
checks every submitted (or gold) result against it and returns the normalised form that is
stored and compared by ``labelvault.quality.agreement``.

Decisions
---------
* Labels: 1..200 per schema, each 1..100 characters, not blank, no control characters, line
  or paragraph separators or lone surrogates. Labels must be unique, also after Unicode NFC
  normalisation (two visually identical labels would be indistinguishable to annotators).
  Labels are stored exactly as given.
* ``multi`` is accepted only for the classification kinds (default ``false``).
* Classification results are ``{"labels": [...]}``: exactly one label unless ``multi``; a
  multi-label result may be empty ("none of the labels apply"). No duplicates. The normalised
  list follows the schema's label order.
* Span results are ``{"spans": [{"start", "end", "label"}]}``. Offsets are **Unicode code point
  indices** into the item text, i.e. Python ``str`` indices, ``text[start:end]``; they are
  always on character boundaries by construction, so UTF-8/UTF-16 byte offsets sent by a
  client show up as out-of-range or wrong spans, never as split characters. ``0 <= start <
  end <= len(text)``. Overlapping spans are allowed (nested entities), exact duplicates
  (same start, end and label) are rejected. Output is sorted by ``(start, end, label)``.
* Box results are ``{"boxes": [{"x", "y", "w", "h", "label"}]}`` in pixels with the origin at
  the top-left corner; numbers may be ints or finite floats (``bool`` is not a number),
  ``w > 0``, ``h > 0`` and the box lies inside the image. Exact duplicates are rejected.
  Output is sorted by ``(y, x, h, w, label)``; numbers keep their type.
* At most 10,000 spans or boxes per result; lists are length-checked before they are walked.
* Unknown keys are rejected everywhere. Error fields are paths such as ``spans[2].end`` and
  the message starts with the same path (``"spans[2].end: must be an integer"``) for callers
  that keep only the message. A foreign key is named in the path only when it is a short
  identifier; messages never contain submitted values.
* Missing context is a programming error, not bad input: validating a span result without
  ``text`` or a box result without ``image_size`` raises ``ValueError``.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeAlias, cast, get_args

from labelvault.kernel.errors import InvalidInputError

SchemaKind: TypeAlias = Literal[
    "text_classification", "text_spans", "image_classification", "image_boxes"
]
Media: TypeAlias = Literal["text", "image"]
Result: TypeAlias = Mapping[str, Any]
"""A normalised result as returned by ``validate_result``."""

KINDS: Final[tuple[SchemaKind, ...]] = get_args(SchemaKind)
CLASSIFICATION_KINDS: Final = frozenset({"text_classification", "image_classification"})
MAX_LABELS: Final = 200
MAX_LABEL_CHARS: Final = 100
MAX_SPANS: Final = 10_000
MAX_BOXES: Final = 10_000

_FORBIDDEN_CATEGORIES: Final = frozenset({"Cc", "Cs", "Zl", "Zp"})
_SAFE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")
_SCHEMA_KEYS: Final = frozenset({"kind", "labels", "multi"})
_SPAN_KEYS: Final = frozenset({"start", "end", "label"})
_BOX_KEYS: Final = frozenset({"x", "y", "w", "h", "label"})


@dataclass(frozen=True, slots=True)
class LabelSchema:
    """A validated label schema; build it with ``parse_label_schema``."""

    kind: SchemaKind
    labels: tuple[str, ...]
    multi: bool = False
    _index: Mapping[str, int] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {label: i for i, label in enumerate(self.labels)})

    @property
    def media(self) -> Media:
        return "text" if self.kind.startswith("text_") else "image"

    @property
    def is_classification(self) -> bool:
        return self.kind in CLASSIFICATION_KINDS

    def label_index(self, label: str) -> int | None:
        """Position of ``label`` in the schema, or None when it is not one of its labels."""
        return self._index.get(label)

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"kind": self.kind, "labels": list(self.labels)}
        if self.is_classification:
            out["multi"] = self.multi
        return out


def _fail(message: str, where: str) -> InvalidInputError:
    """The message names the path too: some callers only keep the message."""
    return InvalidInputError(f"{where}: {message}", field=where)


def _key_path(prefix: str, key: object, root: str) -> str:
    """Path naming a foreign key, only when the key is a short identifier (never echo junk)."""
    if isinstance(key, str) and _SAFE_KEY.fullmatch(key):
        return f"{prefix}.{key}" if prefix else key
    return prefix or root


def _check_keys(
    obj: Mapping[Any, Any], allowed: frozenset[str], where: str, root: str = "result"
) -> None:
    for key in obj:
        if key not in allowed:
            raise _fail(
                f"unexpected key; allowed: {', '.join(sorted(allowed))}",
                _key_path(where, key, root),
            )


def _label_problem(label: object) -> str | None:
    if not isinstance(label, str):
        return "must be a string"
    if not label or label.isspace():
        return "must not be empty"
    if len(label) > MAX_LABEL_CHARS:
        return f"must be at most {MAX_LABEL_CHARS} characters"
    if any(unicodedata.category(ch) in _FORBIDDEN_CATEGORIES for ch in label):
        return "must not contain control characters"
    return None


def parse_label_schema(obj: object) -> LabelSchema:
    """Validate a schema document (already JSON-decoded) and return the schema."""
    if not isinstance(obj, Mapping):
        raise _fail("must be an object", "schema")
    _check_keys(obj, _SCHEMA_KEYS, "", "schema")
    kind = obj.get("kind")
    if kind is None:
        raise _fail("is required", "kind")
    if not isinstance(kind, str) or kind not in KINDS:
        raise _fail(f"must be one of: {', '.join(KINDS)}", "kind")
    labels = obj.get("labels")
    if labels is None:
        raise _fail("is required", "labels")
    if not isinstance(labels, list | tuple):
        raise _fail("must be a list of strings", "labels")
    if not 1 <= len(labels) <= MAX_LABELS:
        raise _fail(f"must contain between 1 and {MAX_LABELS} labels", "labels")
    seen: set[str] = set()
    for i, label in enumerate(labels):
        problem = _label_problem(label)
        if problem:
            raise _fail(problem, f"labels[{i}]")
        folded = unicodedata.normalize("NFC", cast(str, label))
        if folded in seen:
            raise _fail("duplicate label", f"labels[{i}]")
        seen.add(folded)
    multi = obj.get("multi", False)
    if "multi" in obj:
        if kind not in CLASSIFICATION_KINDS:
            raise _fail("is only allowed for classification schemas", "multi")
        if not isinstance(multi, bool):
            raise _fail("must be true or false", "multi")
    return LabelSchema(kind=kind, labels=tuple(labels), multi=multi)


# --- results ------------------------------------------------------------------------------


def _container(result: object, schema: LabelSchema, key: str, limit: int) -> list[Any]:
    if not isinstance(result, Mapping):
        raise _fail("must be an object", "result")
    _check_keys(result, frozenset({key}), "")
    if key not in result:
        raise _fail("is required", key)
    items = result[key]
    if not isinstance(items, list | tuple):
        raise _fail("must be a list", key)
    if len(items) > limit:
        raise _fail(f"must contain at most {limit} entries", key)
    return list(items)


def _label_of(schema: LabelSchema, value: object, where: str) -> str:
    if not isinstance(value, str):
        raise _fail("must be a string", where)
    if schema.label_index(value) is None:
        raise _fail("is not a label of this schema", where)
    return value


def _int_field(entry: Mapping[Any, Any], key: str, where: str) -> int:
    if key not in entry:
        raise _fail("is required", f"{where}.{key}")
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail("must be an integer", f"{where}.{key}")
    return value


def _number_field(entry: Mapping[Any, Any], key: str, where: str) -> int | float:
    if key not in entry:
        raise _fail("is required", f"{where}.{key}")
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail("must be a number", f"{where}.{key}")
    if isinstance(value, float) and not math.isfinite(value):
        raise _fail("must be a finite number", f"{where}.{key}")
    return value


def _entry(value: object, where: str, keys: frozenset[str]) -> Mapping[Any, Any]:
    if not isinstance(value, Mapping):
        raise _fail("must be an object", where)
    _check_keys(value, keys, where)
    return value


def _classification(schema: LabelSchema, result: object) -> dict[str, Any]:
    labels = _container(result, schema, "labels", len(schema.labels))
    chosen: set[str] = set()
    for i, value in enumerate(labels):
        label = _label_of(schema, value, f"labels[{i}]")
        if label in chosen:
            raise _fail("duplicate label", f"labels[{i}]")
        chosen.add(label)
    if not schema.multi and len(chosen) != 1:
        raise _fail("exactly one label is required", "labels")
    return {"labels": [label for label in schema.labels if label in chosen]}


def _spans(schema: LabelSchema, result: object, text: str) -> dict[str, Any]:
    entries = _container(result, schema, "spans", MAX_SPANS)
    size = len(text)
    seen: set[tuple[int, int, str]] = set()
    for i, raw in enumerate(entries):
        where = f"spans[{i}]"
        entry = _entry(raw, where, _SPAN_KEYS)
        start = _int_field(entry, "start", where)
        end = _int_field(entry, "end", where)
        if "label" not in entry:
            raise _fail("is required", f"{where}.label")
        label = _label_of(schema, entry["label"], f"{where}.label")
        if not 0 <= start < size:
            raise _fail(
                f"must be between 0 and {max(size - 1, 0)} (code point index)", f"{where}.start"
            )
        if not start < end <= size:
            raise _fail(
                f"must be greater than start and at most {size} (code point index)", f"{where}.end"
            )
        key = (start, end, label)
        if key in seen:
            raise _fail("duplicate span", where)
        seen.add(key)
    ordered = sorted(seen)
    return {"spans": [{"start": s, "end": e, "label": lab} for s, e, lab in ordered]}


def _boxes(schema: LabelSchema, result: object, width: int, height: int) -> dict[str, Any]:
    entries = _container(result, schema, "boxes", MAX_BOXES)
    seen: set[tuple[int | float, int | float, int | float, int | float, str]] = set()
    out: list[dict[str, Any]] = []
    for i, raw in enumerate(entries):
        where = f"boxes[{i}]"
        entry = _entry(raw, where, _BOX_KEYS)
        x = _number_field(entry, "x", where)
        y = _number_field(entry, "y", where)
        w = _number_field(entry, "w", where)
        h = _number_field(entry, "h", where)
        if "label" not in entry:
            raise _fail("is required", f"{where}.label")
        label = _label_of(schema, entry["label"], f"{where}.label")
        # Each bound is checked on its own before any addition, so huge ints never overflow.
        if not 0 <= x < width:
            raise _fail(f"must be at least 0 and less than the image width {width}", f"{where}.x")
        if not 0 <= y < height:
            raise _fail(f"must be at least 0 and less than the image height {height}", f"{where}.y")
        if not 0 < w <= width or x + w > width:
            raise _fail("must be positive and keep the box inside the image", f"{where}.w")
        if not 0 < h <= height or y + h > height:
            raise _fail("must be positive and keep the box inside the image", f"{where}.h")
        key = (x, y, w, h, label)
        if key in seen:
            raise _fail("duplicate box", where)
        seen.add(key)
        out.append({"x": x, "y": y, "w": w, "h": h, "label": label})
    out.sort(key=lambda b: (b["y"], b["x"], b["h"], b["w"], b["label"]))
    return {"boxes": out}


def validate_result(
    schema: LabelSchema,
    result: object,
    *,
    text: str | None = None,
    image_size: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Check ``result`` against ``schema``; return its normalised form.

    ``text`` is required for span schemas, ``image_size`` (width, height) for box schemas.
    Raises ``InvalidInputError`` whose ``field`` is the path of the offending value.
    """
    if schema.is_classification:
        return _classification(schema, result)
    if schema.kind == "text_spans":
        if text is None:
            raise ValueError("validating a span result needs the item text")
        return _spans(schema, result, text)
    if image_size is None:
        raise ValueError("validating a box result needs the image size")
    width, height = image_size
    if width <= 0 or height <= 0:
        raise ValueError("image size must be positive")
    return _boxes(schema, result, width, height)


def result_summary_label(schema: LabelSchema, result: Result) -> str | tuple[str, ...]:
    """The category of a normalised classification result, for agreement statistics.

    Single-label: the label. Multi-label: the tuple of chosen labels in schema order (so
    equal label sets give equal tuples). Spans and boxes have no single category.
    """
    if not schema.is_classification:
        raise ValueError("only classification results have a summary label")
    labels = cast(list[str], result["labels"])
    if schema.multi:
        return tuple(labels)
    return labels[0]
