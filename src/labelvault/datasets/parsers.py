"""Streaming parsers for dataset imports (pure: no database, no network).

``iter_items(source, fmt=..., name=..., limits=...)`` yields ``ParsedItem`` for good rows and
``RowError`` for bad ones, in file order, with memory bounded by the limits whatever the input
size. Problems with the whole file raise ``ImportRejectedError`` (a 422 ``InvalidInputError``).

Formats (``fmt``, else detected from ``name``'s extension / the path, else from magic bytes):

* ``jsonl`` (``.jsonl``, ``.ndjson``): one JSON object per line with ``text`` (required), and
  optional ``subject_id`` (string), ``metadata`` (flat object of scalars), ``gold`` (object:
  the expected result; makes the item a gold item), ``id`` or ``external_id`` (string or
  integer, kept as ``metadata["external_id"]``). Other keys reject the row. Duplicate keys,
  ``NaN``/``Infinity`` and numbers that overflow a float reject the row.
* ``csv`` / ``tsv`` (``.csv``, ``.tsv``): header row required with a ``text`` column; the
  special columns ``subject_id``, ``id``/``external_id`` and ``gold`` (JSON object) are
  optional; every other column becomes a string metadata value. CSV follows RFC 4180
  (quoted fields may span lines; the row's ``line`` is where its record starts); TSV is
  unquoted, one record per line. Header problems reject the file.
* ``text`` (``.txt``): one item per line; blank lines are skipped.
* ``zip``: PNG/JPEG images; ``folder``: a directory of them (walked in sorted order, symlinks
  are not followed); ``image``: a single ``.png``/``.jpg``/``.jpeg``.

Decisions
---------
* Line numbers are 1-based physical lines of the file. For archives and folders ``line`` is
  the 1-based position of the entry (central-directory order, or sorted walk order).
  Directories, ``__MACOSX/`` and hidden files (``.DS_Store``, ``._x``) are skipped silently.
* Text is decoded strictly as UTF-8 (a UTF-8 BOM at the start is dropped). The byte offset in
  "not valid UTF-8 at byte N" counts from the start of the file. Files with a UTF-16/32 BOM,
  or whose first 4 KiB are NUL-rich (BOM-less UTF-16, binary) and files starting with ZIP,
  gzip, PNG or JPEG magic are rejected as a whole. NUL characters are rejected per row
  (PostgreSQL cannot store them). Text is kept exactly as written (no normalisation, no
  trimming), so annotation offsets refer to the stored text; HTML/SVG inside text is just text.
* A physical line (or CSV record) longer than ``max_line_bytes`` is skipped in bounded chunks
  and reported; a CSV record that grows past it across lines (typically an unbalanced
  quote) rejects the file, since the parser cannot resynchronise.
* ``RowError.reason`` never contains row content: it names fields we define and positions.
  For archive entries the entry name is shown, control/format characters escaped and cut to
  200 characters.
* Images are accepted only when the bytes start with PNG/JPEG magic, Pillow (restricted to
  those two decoders) opens them, the size is within ``max_image_pixels`` (checked from the
  header, before any decoding; Pillow's own bomb check is also caught), ``verify()`` passes,
  and for JPEG a reduced-size (1/8 scale) decode succeeds, which detects truncation. The
  original bytes are returned unchanged.
* ZIP: checked from the end-of-central-directory record before the directory is loaded
  (entry count, directory size), then from the directory (total declared size, ratio per
  entry and overall, encryption, STORED/DEFLATED only, nested archives by name); all of these
  reject the file. While inflating, bytes are counted and an entry producing more than its
  header declares (or failing its CRC) rejects the file, as does an entry whose content is a
  ZIP. Non-seekable ZIP streams are spooled to an anonymous temporary file first (the raw
  upload, as received; callers that must not write uploads to disk pass a seekable stream).
* ``max_items`` and ``max_row_errors`` are enforced as the stream is consumed: the import is
  rejected when the next item or error would exceed them, so callers should treat an
  ``ImportRejectedError`` after some items as "reject everything" (one transaction).
* CSV needs ``csv.field_size_limit`` at least ``max_line_bytes``; it is process-wide, so it is
  raised (never lowered) once, under a lock.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import struct
import threading
import unicodedata
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO, Final, Literal, NoReturn, TypeAlias

from PIL import Image

from labelvault.datasets.limits import ImportLimits
from labelvault.kernel.errors import InvalidInputError

Format: TypeAlias = Literal["jsonl", "csv", "tsv", "text", "zip", "folder", "image"]
MetaValue: TypeAlias = str | int | float | bool | None
Source: TypeAlias = BinaryIO | IO[bytes] | os.PathLike[str] | str

FORMATS: Final[tuple[Format, ...]] = ("jsonl", "csv", "tsv", "text", "zip", "folder", "image")
_ALIASES: Final[dict[str, Format]] = {
    "jsonl": "jsonl",
    "ndjson": "jsonl",
    "jsonlines": "jsonl",
    "json_lines": "jsonl",
    "csv": "csv",
    "tsv": "tsv",
    "text": "text",
    "txt": "text",
    "plain": "text",
    "zip": "zip",
    "folder": "folder",
    "directory": "folder",
    "dir": "folder",
    "image": "image",
    "png": "image",
    "jpg": "image",
    "jpeg": "image",
}
_EXTENSIONS: Final[dict[str, Format]] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".txt": "text",
    ".zip": "zip",
    ".png": "image",
    ".jpg": "image",
    ".jpeg": "image",
}

_CHUNK: Final = 64 * 1024
_BOM: Final = b"\xef\xbb\xbf"
_PNG_MAGIC: Final = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC: Final = b"\xff\xd8\xff"
_ZIP_MAGIC: Final = b"PK\x03\x04"
_EMPTY_ZIP_MAGIC: Final = b"PK\x05\x06"
_GZIP_MAGIC: Final = b"\x1f\x8b"
_INT64: Final = 2**63
_ESCAPED_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_NESTED_ARCHIVES: Final = (
    ".zip",
    ".jar",
    ".7z",
    ".rar",
    ".gz",
    ".tgz",
    ".tar",
    ".bz2",
    ".xz",
    ".zst",
)
_SKIPPED_NAMES: Final = frozenset({"Thumbs.db", "desktop.ini"})
_JSONL_KEYS: Final = frozenset({"text", "subject_id", "metadata", "gold", "id", "external_id"})
_RESERVED_META: Final = frozenset({"subject_id", "source_name", "external_id"})
_DRIVE = re.compile(r"^[A-Za-z]:")


class ImportRejectedError(InvalidInputError):
    """The file as a whole cannot be imported (bomb, wrong format, too large...)."""


@dataclass(frozen=True, slots=True)
class ParsedItem:
    line: int
    kind: Literal["text", "image"]
    text: str | None = None
    image: bytes | None = field(default=None, repr=False)
    image_format: Literal["png", "jpeg"] | None = None
    width: int | None = None
    height: int | None = None
    subject_id: str | None = None
    metadata: dict[str, MetaValue] = field(default_factory=dict)
    is_gold: bool = False
    gold: object | None = None
    source_name: str | None = None


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    reason: str


Entry: TypeAlias = ParsedItem | RowError


class ItemStream(Iterator[Entry]):
    """The iterator ``iter_items`` returns; ``format`` is the format in use."""

    def __init__(self, fmt: Format, entries: Iterator[Entry], limits: ImportLimits) -> None:
        self.format: Format = fmt
        self.items = 0
        self.errors = 0
        self._entries = entries
        self._limits = limits

    def __iter__(self) -> ItemStream:
        return self

    def __next__(self) -> Entry:
        entry = next(self._entries)
        if isinstance(entry, RowError):
            self.errors += 1
            if self.errors > self._limits.max_row_errors:
                self.close()
                raise ImportRejectedError(
                    f"more than {self._limits.max_row_errors} bad rows; is this a {self.format}"
                    " file?"
                )
        else:
            self.items += 1
            if self.items > self._limits.max_items:
                self.close()
                raise ImportRejectedError(f"more than {self._limits.max_items} items")
        return entry

    def close(self) -> None:
        close = getattr(self._entries, "close", None)
        if close is not None:
            close()


# --- helpers ------------------------------------------------------------------------------


def _human(size: int) -> str:
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} bytes"


def _reject(message: str) -> NoReturn:
    raise ImportRejectedError(message)


def display_name(name: str, limit: int = 200) -> str:
    """An entry name safe to show in a reason: control/format characters escaped, cut."""
    out: list[str] = []
    for ch in name:
        if unicodedata.category(ch) in _ESCAPED_CATEGORIES:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}")
        else:
            out.append(ch)
    shown = "".join(out)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")  # categories Cc and Cs


def _has_control(value: str) -> bool:
    return _CONTROL.search(value) is not None


def _read_some(stream: IO[bytes], size: int) -> bytes:
    """Read up to ``size`` bytes, looping over short reads; fewer only at end of file."""
    parts: list[bytes] = []
    got = 0
    while got < size:
        chunk = stream.read(size - got)
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def detect_format(name: str | None) -> Format | None:
    """The format implied by a file name's extension, or None."""
    if not name:
        return None
    suffix = os.path.splitext(name.replace("\\", "/").rsplit("/", 1)[-1])[1].lower()
    return _EXTENSIONS.get(suffix)


def sniff_format(head: bytes) -> Format | None:
    """The binary format the first bytes announce (a zip, an image), or None."""
    if head.startswith((_ZIP_MAGIC, _EMPTY_ZIP_MAGIC)):
        return "zip"
    if head.startswith((_PNG_MAGIC, _JPEG_MAGIC)):
        return "image"
    return None


# --- entry point --------------------------------------------------------------------------


def iter_items(
    source: Source,
    *,
    fmt: str | None = None,
    name: str | None = None,
    limits: ImportLimits = ImportLimits(),
) -> ItemStream:
    """Parse ``source`` (a path, or a binary stream that the caller keeps and closes).

    The format is resolved now (unknown format, missing or oversized file raise here);
    everything else happens while iterating.
    """
    path: Path | None = None
    stream: IO[bytes] | None = None
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.exists():
            _reject("the file to import does not exist")
        name = name or path.name
    else:
        stream = source
    resolved: Format | None
    if fmt is not None:
        resolved = _ALIASES.get(fmt.strip().lower())
        if resolved is None:
            _reject(f"unknown import format; use one of: {', '.join(FORMATS)}")
    elif path is not None and path.is_dir():
        resolved = "folder"
    else:
        resolved = detect_format(name)
        if resolved is None:
            head = b""
            if path is not None:
                with path.open("rb") as f:
                    head = f.read(8)
            elif stream is not None and stream.seekable():
                position = stream.tell()
                head = _read_some(stream, 8)
                stream.seek(position)
            resolved = sniff_format(head)
        if resolved is None:
            _reject(
                "cannot tell the file's format from its name; use .jsonl, .csv, .tsv, .txt, "
                ".zip, .png or .jpg, or say which format it is"
            )
    if resolved == "folder":
        if path is None or not path.is_dir():
            _reject("a folder import needs a directory path")
        return ItemStream(resolved, _folder_items(path, limits), limits)
    if path is not None:
        if not path.is_file():
            _reject("the path to import is not a regular file")
        if path.stat().st_size > limits.max_upload_bytes:
            _reject(f"the file is larger than {_human(limits.max_upload_bytes)}")
    return ItemStream(resolved, _items(resolved, path, stream, name, limits), limits)


def _items(
    fmt: Format,
    path: Path | None,
    stream: IO[bytes] | None,
    name: str | None,
    limits: ImportLimits,
) -> Iterator[Entry]:
    if path is not None:
        with path.open("rb") as f:
            yield from _dispatch(fmt, f, name, limits)
    else:
        assert stream is not None
        yield from _dispatch(fmt, stream, name, limits)


def _dispatch(
    fmt: Format, stream: IO[bytes], name: str | None, limits: ImportLimits
) -> Iterator[Entry]:
    if fmt == "zip":
        yield from _zip_items(stream, limits)
    elif fmt == "image":
        data = _read_some(stream, limits.max_image_bytes + 1)
        shown = display_name(_basename(name)) if name else "image"
        if len(data) > limits.max_image_bytes:
            yield RowError(1, f"{shown}: image larger than {_human(limits.max_image_bytes)}")
            return
        yield _image_entry(1, data, _basename(name) if name else None, shown, limits)
    else:
        lines = _physical_lines(stream, limits, fmt)
        if fmt == "jsonl":
            yield from _jsonl_items(lines, limits)
        elif fmt == "text":
            yield from _text_items(lines, limits)
        else:
            yield from _csv_items(lines, limits, tsv=fmt == "tsv")


# --- line formats -------------------------------------------------------------------------

_Line: TypeAlias = tuple[int, int, bytes | None]


def _check_text_head(head: bytes, fmt: str) -> None:
    if head.startswith((b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")):
        _reject("the file is UTF-16 or UTF-32 encoded; save it as UTF-8")
    if sniff_format(head) is not None or head.startswith(_GZIP_MAGIC):
        _reject(f"the file is binary (an archive or image), not {fmt} text")
    if head and head.count(0) * 4 >= len(head):
        _reject("the file looks like UTF-16 or binary data, not UTF-8 text")


def _physical_lines(stream: IO[bytes], limits: ImportLimits, fmt: str) -> Iterator[_Line]:
    """(line number, file offset of the line, bytes without newline or None when too long)."""
    max_line = limits.max_line_bytes
    chunk = _read_some(stream, _CHUNK)
    total = len(chunk)
    _check_text_head(chunk[:4096], fmt)
    pos = len(_BOM) if chunk.startswith(_BOM) else 0
    base = 0
    line_start = pos
    lineno = 0
    pending = bytearray()
    overflow = False
    while chunk:
        while True:
            nl = chunk.find(b"\n", pos)
            if nl < 0:
                if not overflow:
                    if len(pending) + len(chunk) - pos > max_line:
                        overflow = True
                        pending = bytearray()
                    else:
                        pending += memoryview(chunk)[pos:]
                break
            lineno += 1
            if overflow or len(pending) + nl - pos > max_line:
                yield lineno, line_start, None
            elif pending:
                pending += memoryview(chunk)[pos:nl]
                yield lineno, line_start, bytes(pending)
            else:
                yield lineno, line_start, chunk[pos:nl]
            overflow = False
            pending = bytearray()
            pos = nl + 1
            line_start = base + pos
        base += len(chunk)
        chunk = stream.read(_CHUNK) or b""
        pos = 0
        total += len(chunk)
        if total > limits.max_upload_bytes:
            _reject(f"the file is larger than {_human(limits.max_upload_bytes)}")
    if pending or overflow:
        yield lineno + 1, line_start, None if overflow else bytes(pending)


def _decode(data: bytes, offset: int) -> tuple[str | None, str | None]:
    if data.endswith(b"\r"):
        data = data[:-1]
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        return None, f"not valid UTF-8 at byte {offset + exc.start}"


def _too_long(limits: ImportLimits) -> str:
    return f"line longer than {_human(limits.max_line_bytes)}"


def _decoded_lines(
    lines: Iterator[_Line], limits: ImportLimits
) -> Iterator[tuple[int, str] | RowError]:
    """Non-blank lines decoded as UTF-8, or the row error of an oversized or undecodable one."""
    for lineno, offset, data in lines:
        if data is None:
            yield RowError(lineno, _too_long(limits))
            continue
        text, problem = _decode(data, offset)
        if text is None:
            yield RowError(lineno, problem or "not valid UTF-8")
        elif text.strip():
            yield lineno, text


def _text_items(lines: Iterator[_Line], limits: ImportLimits) -> Iterator[Entry]:
    for entry in _decoded_lines(lines, limits):
        if isinstance(entry, RowError):
            yield entry
            continue
        lineno, text = entry
        if "\x00" in text:
            yield RowError(lineno, "text contains a NUL character")
            continue
        yield ParsedItem(line=lineno, kind="text", text=text)


class _JsonProblem(Exception):
    pass


def _no_constant(_: str) -> NoReturn:
    raise _JsonProblem("NaN and Infinity are not allowed in JSON")


def _finite_float(value: str) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise _JsonProblem("number too large")
    return number


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise _JsonProblem("duplicate key in a JSON object")
    return out


_DECODER = json.JSONDecoder(
    parse_constant=_no_constant, parse_float=_finite_float, object_pairs_hook=_unique_pairs
)


def _loads(text: str) -> tuple[Any, str | None]:
    try:
        return _DECODER.decode(text), None
    except _JsonProblem as exc:
        return None, str(exc)
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON (column {exc.colno})"
    except RecursionError:
        return None, "JSON nested too deeply"
    except ValueError:  # e.g. an integer with more digits than Python converts
        return None, "number too large"


def _string_field(value: object, label: str, max_chars: int) -> tuple[str | None, str | None]:
    if not isinstance(value, str):
        return None, f"field '{label}' must be a string"
    if not value or len(value) > max_chars or _has_control(value):
        return None, (
            f"field '{label}' must be 1 to {max_chars} characters without control characters"
        )
    return value, None


def _external_id(value: object, label: str, limits: ImportLimits) -> tuple[str | None, str | None]:
    if isinstance(value, int) and not isinstance(value, bool):
        if abs(value) >= _INT64:
            return None, f"field '{label}' is out of range"
        value = str(value)
    return _string_field(value, label, limits.max_external_id_chars)


def _metadata(
    raw: object, external_id: str | None, limits: ImportLimits
) -> tuple[dict[str, MetaValue], str | None]:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        return {}, "field 'metadata' must be an object"
    if len(raw) > limits.max_metadata_keys:
        return {}, f"field 'metadata' has more than {limits.max_metadata_keys} keys"
    meta: dict[str, MetaValue] = {}
    for key, value in raw.items():
        if (
            not isinstance(key, str)
            or not key
            or len(key) > limits.max_metadata_key_chars
            or _has_control(key)
        ):
            return {}, (
                f"metadata keys must be 1 to {limits.max_metadata_key_chars} characters "
                "without control characters"
            )
        if key in _RESERVED_META:
            return {}, f"metadata key '{key}' is reserved"
        if isinstance(value, str):
            if "\x00" in value:
                return {}, "metadata values must not contain NUL characters"
        elif isinstance(value, bool) or value is None:
            pass
        elif isinstance(value, int):
            if abs(value) >= _INT64:
                return {}, "metadata integers must fit in 64 bits"
        elif isinstance(value, float):
            if not math.isfinite(value):
                return {}, "metadata numbers must be finite"
        else:
            return {}, "field 'metadata' must be a flat object of strings, numbers, booleans"
        meta[key] = value
    if external_id is not None:
        meta["external_id"] = external_id
    # Cheap upper bound first (a char is at most 6 bytes in JSON, numbers at most 24 chars,
    # 8 bytes of punctuation per pair); the exact encoding only for metadata near the limit.
    rough = sum(len(k) + (len(v) if isinstance(v, str) else 4) for k, v in meta.items())
    if (
        rough * 6 + 8 * len(meta) > limits.max_metadata_bytes
        and len(json.dumps(meta, ensure_ascii=False, separators=(",", ":")).encode())
        > limits.max_metadata_bytes
    ):
        return {}, f"field 'metadata' is larger than {_human(limits.max_metadata_bytes)}"
    return meta, None


def _text_value(value: object) -> tuple[str | None, str | None]:
    if value is None:
        return None, "field 'text' is required"
    if not isinstance(value, str):
        return None, "field 'text' must be a string"
    if not value.strip():
        return None, "field 'text' must not be empty"
    if "\x00" in value:
        return None, "field 'text' contains a NUL character"
    return value, None


def _jsonl_row(lineno: int, text: str, limits: ImportLimits) -> Entry:
    obj, problem = _loads(text)
    if problem:
        return RowError(lineno, problem)
    if not isinstance(obj, dict):
        return RowError(lineno, "each line must be a JSON object")
    if not obj.keys() <= _JSONL_KEYS:
        return RowError(lineno, f"unknown field; allowed: {', '.join(sorted(_JSONL_KEYS))}")
    value, problem = _text_value(obj.get("text"))
    if problem:
        return RowError(lineno, problem)
    subject: str | None = None
    if obj.get("subject_id") is not None:
        subject, problem = _string_field(
            obj["subject_id"], "subject_id", limits.max_subject_id_chars
        )
        if problem:
            return RowError(lineno, problem)
    if "id" in obj and "external_id" in obj:
        return RowError(lineno, "give either 'id' or 'external_id', not both")
    external: str | None = None
    for label in ("id", "external_id"):
        if obj.get(label) is not None:
            external, problem = _external_id(obj[label], label, limits)
            if problem:
                return RowError(lineno, problem)
    meta, problem = _metadata(obj.get("metadata"), external, limits)
    if problem:
        return RowError(lineno, problem)
    gold = obj.get("gold")
    if gold is not None and not isinstance(gold, dict):
        return RowError(lineno, "field 'gold' must be an object")
    return ParsedItem(
        line=lineno,
        kind="text",
        text=value,
        subject_id=subject,
        metadata=meta,
        is_gold=gold is not None,
        gold=gold,
    )


def _jsonl_items(lines: Iterator[_Line], limits: ImportLimits) -> Iterator[Entry]:
    for entry in _decoded_lines(lines, limits):
        yield entry if isinstance(entry, RowError) else _jsonl_row(*entry, limits)


# --- CSV ----------------------------------------------------------------------------------

_csv_lock = threading.Lock()


def _ensure_csv_field_limit(size: int) -> None:
    with _csv_lock:
        if csv.field_size_limit() < size:
            csv.field_size_limit(size)


class _CsvFeed:
    """Feeds decoded physical lines to ``csv.reader`` and remembers per-record problems."""

    def __init__(self, lines: Iterator[_Line], limits: ImportLimits) -> None:
        self._lines = lines
        self._limits = limits
        self.start_line = 0
        self.problem: str | None = None
        self._bytes = 0
        self._at_start = True

    def __iter__(self) -> _CsvFeed:
        return self

    def __next__(self) -> str:
        lineno, offset, data = next(self._lines)
        if self._at_start:
            self.start_line = lineno
            self._at_start = False
        if data is None:
            self.problem = self.problem or _too_long(self._limits)
            return "\n"
        self._bytes += len(data) + 1
        if self._bytes > self._limits.max_line_bytes:
            _reject(
                f"the CSV record starting at line {self.start_line} is longer than "
                f"{_human(self._limits.max_line_bytes)} (unbalanced quote?)"
            )
        text, problem = _decode(data, offset)
        if text is None:
            # The record is reported, but its quotes still count: parsing stays in step.
            self.problem = self.problem or problem
            return data.decode("utf-8", "replace").removesuffix("\r") + "\n"
        return text + "\n"

    def reset(self) -> None:
        self.problem = None
        self._bytes = 0
        self._at_start = True


@dataclass(frozen=True, slots=True)
class _CsvHeader:
    width: int
    text: int
    subject: int | None
    external: int | None
    gold: int | None
    meta: tuple[tuple[int, str], ...]


def _csv_header(row: list[str], limits: ImportLimits) -> _CsvHeader:
    names = [column.strip() for column in row]
    special: dict[str, int] = {}
    meta: list[tuple[int, str]] = []
    for i, column in enumerate(names):
        if not column:
            _reject(f"CSV header column {i + 1} has no name")
        if len(column) > limits.max_metadata_key_chars or _has_control(column):
            _reject(
                f"CSV header column {i + 1}: names must be at most "
                f"{limits.max_metadata_key_chars} characters without control characters"
            )
        if names.index(column) != i:
            _reject(f"CSV header column {i + 1} repeats an earlier column name")
        lowered = column.lower()
        if lowered in ("text", "subject_id", "id", "external_id", "gold"):
            if lowered in special or (lowered in ("id", "external_id") and "external" in special):
                _reject(f"CSV header column {i + 1} repeats a special column")
            special["external" if lowered in ("id", "external_id") else lowered] = i
        elif lowered == "source_name":
            _reject("CSV column 'source_name' is reserved")
        else:
            meta.append((i, column))
    if "text" not in special:
        _reject("the CSV header has no 'text' column")
    if len(meta) > limits.max_metadata_keys:
        _reject(f"the CSV has more than {limits.max_metadata_keys} metadata columns")
    return _CsvHeader(
        width=len(names),
        text=special["text"],
        subject=special.get("subject_id"),
        external=special.get("external"),
        gold=special.get("gold"),
        meta=tuple(meta),
    )


def _csv_row(lineno: int, row: list[str], header: _CsvHeader, limits: ImportLimits) -> Entry:
    if len(row) != header.width:
        return RowError(lineno, f"row has {len(row)} fields, the header has {header.width}")
    text, problem = _text_value(row[header.text])
    if problem:
        return RowError(lineno, problem)
    subject: str | None = None
    if header.subject is not None and row[header.subject]:
        subject, problem = _string_field(
            row[header.subject], "subject_id", limits.max_subject_id_chars
        )
        if problem:
            return RowError(lineno, problem)
    external: str | None = None
    if header.external is not None and row[header.external]:
        external, problem = _external_id(row[header.external], "id", limits)
        if problem:
            return RowError(lineno, problem)
    meta, problem = _metadata({name: row[i] for i, name in header.meta}, external, limits)
    if problem:
        return RowError(lineno, problem)
    gold: Any = None
    if header.gold is not None and row[header.gold].strip():
        gold, problem = _loads(row[header.gold])
        if problem:
            return RowError(lineno, f"column 'gold': {problem}")
        if not isinstance(gold, dict):
            return RowError(lineno, "column 'gold' must hold a JSON object")
    return ParsedItem(
        line=lineno,
        kind="text",
        text=text,
        subject_id=subject,
        metadata=meta,
        is_gold=gold is not None,
        gold=gold,
    )


def _csv_error_reason(exc: csv.Error) -> str:
    message = str(exc)
    if "NUL" in message:
        return "contains a NUL character"
    if "field limit" in message:
        return "field longer than the limit"
    return "malformed CSV record"


def _csv_items(lines: Iterator[_Line], limits: ImportLimits, *, tsv: bool) -> Iterator[Entry]:
    _ensure_csv_field_limit(limits.max_line_bytes)
    feed = _CsvFeed(lines, limits)
    if tsv:
        reader = csv.reader(feed, delimiter="\t", quoting=csv.QUOTE_NONE, strict=False)
    else:
        reader = csv.reader(feed, strict=False)
    header: _CsvHeader | None = None
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            if header is None:
                _reject("the CSV header is malformed")
            yield RowError(feed.start_line, feed.problem or _csv_error_reason(exc))
            feed.reset()
            continue
        lineno, problem = feed.start_line, feed.problem
        feed.reset()
        if header is None:
            if problem:
                _reject(f"the CSV header is unusable: {problem}")
            if row:
                header = _csv_header(row, limits)
            continue
        if problem:
            yield RowError(lineno, problem)
        elif row and any(row):
            yield _csv_row(lineno, row, header, limits)
    if header is None:
        _reject("the CSV file is empty (a header row with a 'text' column is required)")


# --- images -------------------------------------------------------------------------------


def inspect_image(
    data: bytes, limits: ImportLimits
) -> tuple[Literal["png", "jpeg"], int, int] | str:
    """(format, width, height) of a verified PNG/JPEG, or the reason it is refused."""
    fmt: Literal["png", "jpeg"]
    if data.startswith(_PNG_MAGIC):
        fmt, decoder = "png", "PNG"
    elif data.startswith(_JPEG_MAGIC):
        fmt, decoder = "jpeg", "JPEG"
    else:
        return "not a PNG or JPEG image"
    try:
        with Image.open(io.BytesIO(data), formats=[decoder]) as im:
            width, height = im.size
            if width < 1 or height < 1:
                return "image has no pixels"
            if width * height > limits.max_image_pixels:
                return f"image has more than {limits.max_image_pixels} pixels"
            im.verify()
        if fmt == "jpeg":
            with Image.open(io.BytesIO(data), formats=[decoder]) as im:
                im.draft("RGB", (max(1, width // 8), max(1, height // 8)))
                im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return f"image has more than {limits.max_image_pixels} pixels (decompression bomb?)"
    except Exception:  # Pillow raises many types on hostile input; all mean "refused"
        return f"not a valid {decoder} image (corrupt or truncated)"
    return fmt, width, height


def _image_entry(
    line: int, data: bytes, source_name: str | None, shown: str, limits: ImportLimits
) -> Entry:
    inspected = inspect_image(data, limits)
    if isinstance(inspected, str):
        return RowError(line, f"{shown}: {inspected}")
    fmt, width, height = inspected
    return ParsedItem(
        line=line,
        kind="image",
        image=data,
        image_format=fmt,
        width=width,
        height=height,
        source_name=source_name,
    )


def _basename(name: str) -> str:
    return name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


def _safe_relative_name(raw: str, limits: ImportLimits) -> str | None:
    """A clean relative path for an entry, or None when it is unsafe (traversal, controls)."""
    unified = raw.replace("\\", "/")
    if unified.startswith("/") or _DRIVE.match(unified) or _has_control(unified):
        return None
    parts = [p for p in unified.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    clean = "/".join(parts)
    return clean if len(clean) <= limits.max_entry_name_chars else None


def _skipped(name: str) -> bool:
    parts = [p for p in name.replace("\\", "/").split("/") if p]
    if not parts or name.endswith(("/", "\\")):
        return True
    return "__MACOSX" in parts or parts[-1].startswith(".") or parts[-1] in _SKIPPED_NAMES


# --- zip ----------------------------------------------------------------------------------

_EOCD = struct.Struct("<4s4H2LH")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")


def _spool(stream: IO[bytes], limits: ImportLimits) -> IO[bytes]:
    """Buffer a non-seekable zip in MEMORY: plaintext must never reach a temporary file."""
    buffer = bytearray()
    while chunk := stream.read(_CHUNK):
        buffer += chunk
        if len(buffer) > limits.max_upload_bytes:
            _reject(f"the file is larger than {_human(limits.max_upload_bytes)}")
    return io.BytesIO(bytes(buffer))


def _check_end_record(fp: IO[bytes], size: int, limits: ImportLimits) -> None:
    """Entry count and directory size from the end record, before zipfile loads anything."""
    tail_size = min(size, _EOCD.size + 65535)
    fp.seek(size - tail_size)
    tail = fp.read(tail_size)
    at = tail.rfind(_EMPTY_ZIP_MAGIC)
    if at < 0 or len(tail) - at < _EOCD.size:
        _reject("not a valid ZIP archive")
    _, _, _, _, entries, directory, _, _ = _EOCD.unpack_from(tail, at)
    if entries == 0xFFFF or directory == 0xFFFFFFFF:
        locator_at = at - _ZIP64_LOCATOR.size
        if locator_at < 0:
            _reject("not a valid ZIP archive")
        signature, _, record_offset, _ = _ZIP64_LOCATOR.unpack_from(tail, locator_at)
        if signature != b"PK\x06\x07" or record_offset + _ZIP64_EOCD.size > size:
            _reject("not a valid ZIP archive")
        fp.seek(record_offset)
        record = fp.read(_ZIP64_EOCD.size)
        if len(record) != _ZIP64_EOCD.size or not record.startswith(b"PK\x06\x06"):
            _reject("not a valid ZIP archive")
        fields64 = _ZIP64_EOCD.unpack(record)
        entries, directory = fields64[7], fields64[8]
    if entries > limits.max_zip_entries:
        _reject(f"the ZIP archive has more than {limits.max_zip_entries} entries")
    if directory > limits.max_zip_directory_bytes or directory > size:
        _reject("the ZIP archive's directory is too large")
    fp.seek(0)


def _ratio_ok(uncompressed: int, compressed: int, limits: ImportLimits) -> bool:
    return uncompressed <= max(limits.zip_ratio_grace_bytes, limits.max_zip_ratio * compressed)


def _check_directory(infos: list[zipfile.ZipInfo], size: int, limits: ImportLimits) -> None:
    if len(infos) > limits.max_zip_entries:
        _reject(f"the ZIP archive has more than {limits.max_zip_entries} entries")
    total = 0
    for info in infos:
        shown = display_name(info.filename)
        if info.flag_bits & 0x1:
            _reject(f"{shown}: encrypted ZIP entries are not supported")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            _reject(f"{shown}: unsupported compression method (use deflate)")
        if info.compress_size > size or not _ratio_ok(info.file_size, info.compress_size, limits):
            _reject(f"{shown}: compression ratio above {limits.max_zip_ratio}:1 (zip bomb?)")
        if not _skipped(info.filename) and info.filename.lower().endswith(_NESTED_ARCHIVES):
            _reject(f"{shown}: nested archives are not allowed")
        total += info.file_size
    if total > limits.max_zip_total_uncompressed:
        _reject(f"the ZIP archive expands to more than {_human(limits.max_zip_total_uncompressed)}")
    if not _ratio_ok(total, size, limits):
        _reject(f"the ZIP archive's compression ratio is above {limits.max_zip_ratio}:1")


def _read_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, shown: str, budget: list[int]) -> bytes:
    """Inflate one entry, never producing more than it declares or than the total budget."""
    out = io.BytesIO()
    got = 0
    try:
        with zf.open(info) as f:
            while chunk := f.read(min(_CHUNK, info.file_size - got + 1)):
                got += len(chunk)
                budget[0] -= len(chunk)
                if got > info.file_size:
                    _reject(f"{shown}: entry is larger than its ZIP header declares")
                if budget[0] < 0:
                    _reject("the ZIP archive expands to more than its limit")
                out.write(chunk)
    except ImportRejectedError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError):
        _reject(f"{shown}: ZIP entry is corrupt (bad CRC, truncated data or a lying header)")
    if got != info.file_size:
        _reject(f"{shown}: ZIP entry is shorter than its header declares")
    return out.getvalue()


def _zip_items(stream: IO[bytes], limits: ImportLimits) -> Iterator[Entry]:
    spooled: IO[bytes] | None = None
    if not stream.seekable():
        spooled = stream = _spool(stream, limits)
    try:
        size = stream.seek(0, os.SEEK_END)
        if size > limits.max_upload_bytes:
            _reject(f"the file is larger than {_human(limits.max_upload_bytes)}")
        _check_end_record(stream, size, limits)
        try:
            zf = zipfile.ZipFile(stream)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, struct.error):
            _reject("not a valid ZIP archive")
        with zf:
            infos = zf.infolist()
            _check_directory(infos, size, limits)
            budget = [limits.max_zip_total_uncompressed]
            for line, info in enumerate(infos, start=1):
                if info.is_dir() or _skipped(info.filename):
                    continue
                shown = display_name(info.filename)
                clean = _safe_relative_name(info.filename, limits)
                if clean is None:
                    yield RowError(
                        line,
                        f"{shown}: unsafe entry name (absolute path, '..' or control characters)",
                    )
                    continue
                if info.file_size > limits.max_image_bytes:
                    yield RowError(
                        line, f"{shown}: image larger than {_human(limits.max_image_bytes)}"
                    )
                    continue
                data = _read_entry(zf, info, shown, budget)
                if data.startswith((_ZIP_MAGIC, _EMPTY_ZIP_MAGIC)):
                    _reject(f"{shown}: nested archives are not allowed")
                yield _image_entry(line, data, clean, shown, limits)
    finally:
        if spooled is not None:
            spooled.close()


# --- folder -------------------------------------------------------------------------------


def _walk(root: Path, relative: str = "") -> Iterator[tuple[str, os.DirEntry[str]]]:
    with os.scandir(root / relative if relative else root) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        rel = f"{relative}/{entry.name}" if relative else entry.name
        if entry.name.startswith(".") or entry.name in _SKIPPED_NAMES or entry.name == "__MACOSX":
            continue
        if not entry.is_symlink() and entry.is_dir(follow_symlinks=False):
            yield from _walk(root, rel)
        else:
            yield rel, entry


def _folder_items(root: Path, limits: ImportLimits) -> Iterator[Entry]:
    total = 0
    for line, (rel, entry) in enumerate(_walk(root), start=1):
        shown = display_name(rel)
        if line > limits.max_zip_entries:
            _reject(f"the folder has more than {limits.max_zip_entries} files")
        if entry.is_symlink():
            yield RowError(line, f"{shown}: symbolic links are not followed")
            continue
        if not entry.is_file(follow_symlinks=False):
            yield RowError(line, f"{shown}: not a regular file")
            continue
        size = entry.stat(follow_symlinks=False).st_size
        total += size
        if total > limits.max_upload_bytes:
            _reject(f"the folder holds more than {_human(limits.max_upload_bytes)}")
        if size > limits.max_image_bytes:
            yield RowError(line, f"{shown}: image larger than {_human(limits.max_image_bytes)}")
            continue
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
        try:
            fd = os.open(entry.path, flags)
        except OSError:
            yield RowError(line, f"{shown}: cannot be read")
            continue
        with open(fd, "rb") as f:
            data = _read_some(f, limits.max_image_bytes + 1)
        if len(data) > limits.max_image_bytes:
            yield RowError(line, f"{shown}: image larger than {_human(limits.max_image_bytes)}")
            continue
        yield _image_entry(line, data, rel, shown, limits)


__all__ = [
    "FORMATS",
    "Entry",
    "Format",
    "ImportRejectedError",
    "ItemStream",
    "MetaValue",
    "ParsedItem",
    "RowError",
    "detect_format",
    "display_name",
    "inspect_image",
    "iter_items",
]
