from __future__ import annotations

import csv
import io
import json
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labelvault.datasets.limits import MIB, ImportLimits
from labelvault.datasets.parsers import (
    ImportRejectedError,
    ParsedItem,
    RowError,
    detect_format,
    iter_items,
)
from labelvault.kernel.errors import InvalidInputError

MARKER = "zqmarkerzq"


def parse(data: bytes, **kwargs: Any) -> list[ParsedItem | RowError]:
    return list(iter_items(io.BytesIO(data), **kwargs))


def errors(entries: list[ParsedItem | RowError]) -> list[tuple[int, str]]:
    return [(e.line, e.reason) for e in entries if isinstance(e, RowError)]


def items(entries: list[ParsedItem | RowError]) -> list[ParsedItem]:
    return [e for e in entries if isinstance(e, ParsedItem)]


class LazyStream:
    """A read-only binary stream fed by a generator: nothing is materialised up front."""

    def __init__(self, parts: Iterator[bytes]) -> None:
        self._parts = parts
        self._left = b""

    def read(self, size: int = -1) -> bytes:
        while not self._left:
            part = next(self._parts, None)
            if part is None:
                return b""
            self._left = part
        out, self._left = self._left[:size], self._left[size:]
        return out

    def seekable(self) -> bool:
        return False


# --- JSON Lines ---------------------------------------------------------------------------


def test_jsonl_round_trip_with_line_numbers() -> None:
    rows = [
        {"text": "first", "subject_id": "s-1", "metadata": {"lang": "en", "n": 3, "ok": True}},
        {"text": "<b>html is just text</b>", "id": 42},
        {"text": "gold one", "external_id": "x-9", "gold": {"labels": ["spam"]}},
        {"text": "nulls", "metadata": None, "subject_id": None, "gold": None},
    ]
    lines = [json.dumps(r) for r in rows]
    data = ("\ufeff" + lines[0] + "\r\n\n" + "\n".join(lines[1:])).encode()
    stream = iter_items(io.BytesIO(data), name="batch.JSONL")
    out = list(stream)
    assert stream.format == "jsonl"
    assert [e.line for e in out] == [1, 3, 4, 5]
    first, second, gold, last = items(out)
    assert first == ParsedItem(
        line=1,
        kind="text",
        text="first",
        subject_id="s-1",
        metadata={"lang": "en", "n": 3, "ok": True},
    )
    assert second.text == "<b>html is just text</b>"
    assert second.metadata == {"external_id": "42"}
    assert gold.is_gold and gold.gold == {"labels": ["spam"]}
    assert gold.metadata == {"external_id": "x-9"}
    assert not last.is_gold and last.metadata == {} and last.subject_id is None


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"text": 1}', "field 'text' must be a string"),
        ('{"subject_id": "a"}', "field 'text' is required"),
        ('{"text": "  "}', "field 'text' must not be empty"),
        ('{"text": "a\\u0000b"}', "NUL"),
        ('["text"]', "each line must be a JSON object"),
        ("nope", "not valid JSON (column 1)"),
        ('{"text": "a", "text": "b"}', "duplicate key"),
        ('{"text": "a", "metadata": {"n": NaN}}', "NaN"),
        ('{"text": "a", "metadata": {"n": 1e999}}', "number too large"),
        ('{"text": "a", "metadata": {"n": ' + "9" * 5000 + "}}", "number too large"),
        ('{"text": "a", "metadata": {"n": ' + str(2**64) + "}}", "64 bits"),
        ('{"text": "a", "metadata": {"n": {"deep": 1}}}', "flat object"),
        ('{"text": "a", "metadata": [1]}', "field 'metadata' must be an object"),
        ('{"text": "a", "metadata": {"source_name": "x"}}', "reserved"),
        ('{"text": "a", "metadata": {"": 1}}', "metadata keys"),
        ('{"text": "a", "subject_id": 5}', "field 'subject_id' must be a string"),
        ('{"text": "a", "subject_id": "' + "s" * 201 + '"}', "'subject_id' must be 1 to 200"),
        ('{"text": "a", "subject_id": "a\\nb"}', "control characters"),
        ('{"text": "a", "id": true}', "field 'id' must be a string"),
        ('{"text": "a", "id": "1", "external_id": "2"}', "not both"),
        ('{"text": "a", "gold": "spam"}', "field 'gold' must be an object"),
        ('{"text": "a", "extra": 1}', "unknown field"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ],
)
def test_jsonl_bad_rows(line: str, reason: str) -> None:
    out = parse(b'{"text": "ok"}\n' + line.encode() + b'\n{"text": "ok"}\n', fmt="jsonl")
    assert [e.line for e in items(out)] == [1, 3]
    [(lineno, message)] = errors(out)
    assert lineno == 2 and reason in message


def test_jsonl_metadata_limits() -> None:
    too_many = {f"k{i}": i for i in range(51)}
    too_big = {"k": "x" * 5000}
    out = parse(
        "\n".join(json.dumps({"text": "a", "metadata": m}) for m in (too_many, too_big)).encode(),
        fmt="jsonl",
    )
    assert [r for _, r in errors(out)] == [
        "field 'metadata' has more than 50 keys",
        "field 'metadata' is larger than 4 KiB",
    ]


def test_non_utf8_reports_byte_offset_of_the_file() -> None:
    data = b'{"text": "ok"}\n{"text": "caf\xe9"}\n{"text": "fine"}\n'
    out = parse(data, fmt="jsonl")
    offset = data.index(b"\xe9")
    assert errors(out) == [(2, f"not valid UTF-8 at byte {offset}")]
    assert [i.text for i in items(out)] == ["ok", "fine"]
    with_bom = b"\xef\xbb\xbfok\n\xc3(\n"
    assert errors(parse(with_bom, fmt="text")) == [(2, "not valid UTF-8 at byte 6")]


@pytest.mark.parametrize(
    "data",
    [
        '\ufeff{"text": "hi"}\n'.encode("utf-16"),
        '{"text": "hi"}\n'.encode("utf-16-le"),
        '{"text": "hi"}\n'.encode("utf-32"),
        b"PK\x03\x04rest of a zip",
        b"\x89PNG\r\n\x1a\nrest",
    ],
)
def test_non_utf8_files_rejected_whole(data: bytes) -> None:
    with pytest.raises(ImportRejectedError):
        parse(data, fmt="jsonl")


def lazy_long_line(size: int) -> Iterator[bytes]:
    yield b'{"text": "before"}\n{"text": "'
    piece = b"a" * (64 * 1024)
    for _ in range(size // len(piece)):
        yield piece
    yield b'"}\n{"text": "after"}\n'


def test_hundred_megabyte_line_rejected_with_bounded_memory() -> None:
    stream = cast(BinaryIO, LazyStream(lazy_long_line(100 * MIB)))
    tracemalloc.start()
    try:
        out = list(iter_items(stream, fmt="jsonl"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * MIB
    assert [i.text for i in items(out)] == ["before", "after"]
    assert errors(out) == [(2, "line longer than 1 MiB")]


def test_long_last_line_without_newline() -> None:
    out = parse(b"ok\n" + b"x" * (MIB + 1), fmt="text")
    assert errors(out) == [(2, "line longer than 1 MiB")]
    limits = ImportLimits(max_line_bytes=10)
    out = parse(b"0123456789\n01234567890\nshort", fmt="text", limits=limits)
    assert [(e.line, isinstance(e, RowError)) for e in out] == [(1, False), (2, True), (3, False)]


def test_upload_limit_and_item_limits() -> None:
    data = b"".join(b'{"text": "row %d"}\n' % i for i in range(100))
    with pytest.raises(ImportRejectedError, match="larger than 1000 bytes"):
        parse(data, fmt="jsonl", limits=ImportLimits(max_upload_bytes=1000))
    stream = iter_items(io.BytesIO(data), fmt="jsonl", limits=ImportLimits(max_items=10))
    got: list[ParsedItem | RowError] = []
    with pytest.raises(ImportRejectedError, match="more than 10 items"):
        got.extend(stream)
    assert len(got) == 10
    with pytest.raises(ImportRejectedError, match="more than 5 bad rows"):
        parse(b"x\n" * 10, fmt="jsonl", limits=ImportLimits(max_row_errors=5))


def test_rejection_is_an_invalid_input_error() -> None:
    assert issubclass(ImportRejectedError, InvalidInputError)
    with pytest.raises(InvalidInputError) as info:
        iter_items(io.BytesIO(b""), fmt="parquet")
    assert info.value.status == 422


def test_format_detection(tmp_path: Path) -> None:
    assert detect_format("a/b/data.NDJSON") == "jsonl"
    assert detect_format("C:\\x\\pics.zip") == "zip"
    assert detect_format("notes.txt") == "text"
    assert detect_format("x.json") is None and detect_format(None) is None
    with pytest.raises(ImportRejectedError, match="cannot tell"):
        iter_items(io.BytesIO(b"{}"), name="data.json")
    with pytest.raises(ImportRejectedError, match="cannot tell"):
        iter_items(io.BytesIO(b"hello"))
    assert iter_items(io.BytesIO(b"PK\x05\x06" + bytes(18))).format == "zip"
    path = tmp_path / "lines.txt"
    path.write_bytes(b"one\n\ntwo\n")
    stream = iter_items(str(path))
    assert stream.format == "text"
    assert [(i.line, i.text) for i in items(list(stream))] == [(1, "one"), (3, "two")]
    with pytest.raises(ImportRejectedError, match="does not exist"):
        iter_items(tmp_path / "missing.csv")
    with pytest.raises(ImportRejectedError, match="larger than"):
        iter_items(path, limits=ImportLimits(max_upload_bytes=3))


# --- CSV / TSV / text ---------------------------------------------------------------------


def test_csv_round_trip() -> None:
    data = (
        b"\xef\xbb\xbftext,Subject_ID,lang,id,gold\r\n"
        b'"a ""quoted""\r\nmulti-line, text",s1,en,7,"{""labels"": [""spam""]}"\r\n'
        b"\r\n"
        b"plain,,fr,,\r\n"
    )
    stream = iter_items(io.BytesIO(data), name="x.csv")
    out = list(stream)
    assert stream.format == "csv"
    first, second = items(out)
    assert first == ParsedItem(
        line=2,
        kind="text",
        text='a "quoted"\nmulti-line, text',
        subject_id="s1",
        metadata={"lang": "en", "external_id": "7"},
        is_gold=True,
        gold={"labels": ["spam"]},
    )
    assert second.line == 5 and second.text == "plain" and second.subject_id is None
    assert second.metadata == {"lang": "fr"} and not second.is_gold


def test_csv_bad_rows() -> None:
    data = (
        b"text,subject_id,gold\n"
        b"ok,,\n"
        b"too,many,fields,here\n"
        b",s,\n"
        b'bad gold,,"{nope"\n'
        b'"caf\xe9\nspans lines",,\n'
        b"ok again,,\n"
    )
    out = parse(data, fmt="csv")
    offset = data.index(b"\xe9")
    assert [(i.line, i.text) for i in items(out)] == [(2, "ok"), (8, "ok again")]
    assert errors(out) == [
        (3, "row has 4 fields, the header has 3"),
        (4, "field 'text' must not be empty"),
        (5, "column 'gold': not valid JSON (column 2)"),
        (6, f"not valid UTF-8 at byte {offset}"),
    ]


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (b"subject_id,lang\n", "no 'text' column"),
        (b"text,lang,lang\n", "column 3 repeats"),
        (b"text,,lang\n", "column 2 has no name"),
        (b"text,id,external_id\n", "repeats a special column"),
        (b"text,source_name\n", "reserved"),
        (b"text,\xff\n", "header is unusable"),
        (b"text," + b",".join(b"c%d" % i for i in range(51)) + b"\n", "more than 50"),
    ],
)
def test_csv_header_problems_reject_the_file(header: bytes, message: str) -> None:
    with pytest.raises(ImportRejectedError, match=message):
        parse(header + b"a,b\n", fmt="csv")


def test_empty_csv_rejected() -> None:
    with pytest.raises(ImportRejectedError, match="empty"):
        parse(b"\n\n", fmt="csv")


def test_csv_unbalanced_quote_rejects_file_at_record_limit() -> None:
    data = b'text\n"never closed\n' + b"more text\n" * 200
    with pytest.raises(ImportRejectedError, match="starting at line 2"):
        parse(data, fmt="csv", limits=ImportLimits(max_line_bytes=1000))
    # within the limit, the quote simply swallows the rest as one (multi-line) record
    [only] = items(parse(b'text\n"never closed\nmore\n', fmt="csv"))
    assert only.line == 2 and only.text == "never closed\nmore\n"


def test_csv_large_field_within_line_limit() -> None:
    big = "x" * (600 * 1024)
    [item] = items(parse(f"text\n{big}\n".encode(), fmt="csv"))
    assert item.text == big
    assert csv.field_size_limit() >= MIB


def test_tsv_is_unquoted() -> None:
    out = parse(b'text\tnote\nsay "hi\tthere\n', name="f.tsv")
    assert [(i.line, i.text, i.metadata) for i in items(out)] == [(2, 'say "hi', {"note": "there"})]


def test_plain_text() -> None:
    out = parse(b"alpha\r\n\n   \n<svg onload=x>\nnul\x00here\n\xffbad\nlast", fmt="txt")
    assert [(i.line, i.text) for i in items(out)] == [
        (1, "alpha"),
        (4, "<svg onload=x>"),
        (7, "last"),
    ]
    assert errors(out) == [(5, "text contains a NUL character"), (6, "not valid UTF-8 at byte 36")]


# --- generated malformed input ------------------------------------------------------------

marker_text = st.builds(lambda a, b: a + MARKER + b, st.text(max_size=12), st.text(max_size=12))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | marker_text,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["text", "metadata", "gold", "id", MARKER, "x"]), inner, max_size=4
        )
    ),
    max_leaves=12,
)
jsonl_lines = st.one_of(
    marker_text.map(lambda s: s.encode("utf-8", "surrogatepass")),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {"text": json_values},
        optional={
            "metadata": json_values,
            "subject_id": json_values,
            "gold": json_values,
            "id": json_values,
            MARKER: json_values,
        },
    ).map(lambda d: json.dumps(d, ensure_ascii=False).encode("utf-8", "surrogatepass")),
    st.binary(max_size=20).map(lambda b: b + MARKER.encode()),
)


def check_no_content_in_reasons(data: bytes, fmt: str) -> None:
    try:
        out = list(iter_items(io.BytesIO(data), fmt=fmt, limits=ImportLimits(max_line_bytes=400)))
    except ImportRejectedError as exc:
        assert MARKER not in exc.message
        return
    physical = data.count(b"\n") + 1
    for entry in out:
        assert 1 <= entry.line <= physical
        if isinstance(entry, RowError):
            assert MARKER not in entry.reason
            assert entry.reason


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(jsonl_lines, min_size=1, max_size=8))
def test_generated_jsonl_never_crashes_or_echoes(lines: list[bytes]) -> None:
    check_no_content_in_reasons(b"\n".join(lines), "jsonl")


csv_cells = st.one_of(
    marker_text,
    st.sampled_from(['"', '""', ",", "\n", "\r\n", "\x00", MARKER + '"', '"' + MARKER]),
    st.text(alphabet='ab",\n\t', max_size=6),
)
csv_rows = st.lists(csv_cells, min_size=0, max_size=5).map(lambda cells: ",".join(cells))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(csv_rows, min_size=1, max_size=8), st.booleans(), st.binary(max_size=4))
def test_generated_csv_never_crashes_or_echoes(rows: list[str], tsv: bool, junk: bytes) -> None:
    body = "\n".join(rows).encode("utf-8", "surrogatepass") + junk
    check_no_content_in_reasons(b"text,subject_id,note\n" + body, "tsv" if tsv else "csv")
    check_no_content_in_reasons(body, "text")
