"""The audit trail export format (JSON Lines) and its offline verifier.

An export of one chain is UTF-8 text, one JSON object per line, each line ending in ``\\n`` and
written canonically (keys sorted, no whitespace, non-ASCII as is: ``json.dumps(obj,
sort_keys=True, separators=(",", ":"), ensure_ascii=False)``). Events come first, in seq order
from 1, then exactly one trailer line:

* event line: ``seq``, ``ts_us`` (as stored), ``ts`` (the same instant, ISO 8601 UTC with
  microseconds), every field of the event body (``v``, ``action``, ``outcome``, ... exactly the
  body's keys), and ``leaf``, ``prev_hash``, ``chain_hash`` in lowercase hex. The stored body is
  the canonical encoding of the body fields, so the verifier rebuilds it byte for byte. A body
  that is not a valid canonical event (only possible after tampering) is exported as
  ``body_b64`` instead of its fields.
* trailer line: ``{"chain_id", "checkpoints": [signed notes], "format", "origin", "size"}`` where
  ``size`` is the number of event lines and the last checkpoint covers all of them.

:func:`verify_export` checks each line is exactly as written (so any changed byte is caught),
recomputes every leaf and link, checks the checkpoints' signatures with the given public keys
and the Merkle root and chain head they commit to, and that the export ends at a checkpoint.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from labelvault.audit.chain import StoredEvent
from labelvault.audit.checkpoint import Checkpoint, CheckpointError, parse_and_verify
from labelvault.audit.checkpointer import region_of_origin
from labelvault.audit.events import InvalidAuditEventError, parse_body
from labelvault.audit.verify import Problem, ProblemKind, VerificationReport, verify_chain

EXPORT_FORMAT: Final = "labelvault-audit-export/1"
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ROW_KEYS: Final = frozenset({"seq", "ts", "ts_us", "leaf", "prev_hash", "chain_hash"})
_TRAILER_KEYS: Final = frozenset({"chain_id", "checkpoints", "format", "origin", "size"})


def encode(obj: dict[str, Any]) -> bytes:
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def iso_ts(ts_us: int) -> str:
    return (_EPOCH + timedelta(microseconds=ts_us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def ts_us_of(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // timedelta(microseconds=1)


def event_record(ev: StoredEvent) -> dict[str, Any]:
    """The JSON object of one event (as exported and as returned by the trail API)."""
    try:
        fields = parse_body(ev.body)
    except InvalidAuditEventError:
        fields = {"body_b64": base64.b64encode(ev.body).decode("ascii")}
    fields.update(
        seq=ev.seq,
        ts_us=ev.ts_us,
        ts=iso_ts(ev.ts_us),
        leaf=ev.leaf.hex(),
        prev_hash=ev.prev_hash.hex(),
        chain_hash=ev.chain_hash.hex(),
    )
    return fields


def event_line(ev: StoredEvent) -> bytes:
    return encode(event_record(ev)) + b"\n"


def trailer_line(chain_id: str, origin: str, size: int, notes: list[str]) -> bytes:
    return (
        encode(
            {
                "chain_id": chain_id,
                "checkpoints": notes,
                "format": EXPORT_FORMAT,
                "origin": origin,
                "size": size,
            }
        )
        + b"\n"
    )


# -- verification ----------------------------------------------------------------------------


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError("duplicate key")
        out[k] = v
    return out


def _load(raw: bytes) -> dict[str, Any] | None:
    """Parse one line; None unless it is a JSON object written exactly canonically."""
    try:
        obj = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(obj, dict) or encode(obj) != raw:
        return None
    return obj


def _hex32(value: Any) -> bytes | None:
    if not isinstance(value, str) or len(value) != 64 or value != value.lower():
        return None
    try:
        return bytes.fromhex(value)
    except ValueError:
        return None


def _event_of(obj: dict[str, Any]) -> StoredEvent | None:
    """The stored row a line claims; None if the line is malformed."""
    if not obj.keys() >= _ROW_KEYS:
        return None
    seq, ts_us = obj["seq"], obj["ts_us"]
    if type(seq) is not int or type(ts_us) is not int or obj["ts"] != _safe_iso(ts_us):
        return None
    leaf, prev, chain = _hex32(obj["leaf"]), _hex32(obj["prev_hash"]), _hex32(obj["chain_hash"])
    if leaf is None or prev is None or chain is None:
        return None
    fields = {k: v for k, v in obj.items() if k not in _ROW_KEYS}
    if "body_b64" in fields:
        if len(fields) != 1 or not isinstance(fields["body_b64"], str):
            return None
        try:
            body = base64.b64decode(fields["body_b64"], validate=True)
        except binascii.Error:
            return None
    else:
        body = encode(fields)
    return StoredEvent(seq, ts_us, body, leaf, prev, chain)


def _safe_iso(ts_us: int) -> str | None:
    try:
        return iso_ts(ts_us)
    except (OverflowError, ValueError):
        return None


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as fh:
        yield from enumerate(fh, start=1)


def verify_export(path: Path, public_keys: list[str]) -> VerificationReport:
    """Verify an export file offline with the deployment's public key(s)."""
    problems: list[Problem] = []

    def bad(number: int, message: str, seq: int | None = None) -> None:
        problems.append(Problem(seq, ProblemKind.EXPORT_FORMAT, f"line {number}: {message}"))

    # first pass: the trailer (the last line)
    last_number, last = 0, b""
    for number, line in _lines(path):
        last_number, last = number, line
    trailer = _load(last[:-1]) if last.endswith(b"\n") else None
    if trailer is None or set(trailer) != _TRAILER_KEYS or trailer["format"] != EXPORT_FORMAT:
        report = VerificationReport("unknown")
        report.problems.append(
            Problem(None, ProblemKind.EXPORT_FORMAT, f"line {last_number}: no valid trailer line")
        )
        return report
    chain_id, origin, size = trailer["chain_id"], trailer["origin"], trailer["size"]
    notes = trailer["checkpoints"]
    if (
        not isinstance(chain_id, str)
        or not isinstance(origin, str)
        or type(size) is not int
        or not isinstance(notes, list)
        or region_of_origin(origin, chain_id) is None
    ):
        report = VerificationReport(str(chain_id))
        report.problems.append(
            Problem(None, ProblemKind.EXPORT_FORMAT, "trailer fields are malformed")
        )
        return report
    checkpoints: list[Checkpoint] = []
    for i, note in enumerate(notes):
        try:
            if not isinstance(note, str):
                raise CheckpointError("not a string")
            checkpoints.append(parse_and_verify(note, public_keys))
        except CheckpointError as exc:
            problems.append(
                Problem(
                    None, ProblemKind.CHECKPOINT_SIGNATURE, f"checkpoint #{i + 1}: {exc.message}"
                )
            )

    def events() -> Iterator[StoredEvent]:
        for number, line in _lines(path):
            if number == last_number:
                return
            obj = _load(line[:-1]) if line.endswith(b"\n") else None
            ev = _event_of(obj) if obj is not None else None
            if ev is None:
                bad(number, "not an event line exactly as exported", number)
                # keep the count aligned: a placeholder row that fails every check
                yield StoredEvent(number, 0, b"", b"\x00" * 32, b"\x00" * 32, b"\x00" * 32)
                continue
            yield ev

    try:
        report = verify_chain(chain_id, events(), checkpoints, expected_origin=origin)
    except ValueError as exc:  # e.g. an unusable chain id
        report = VerificationReport(chain_id)
        report.problems.append(Problem(None, ProblemKind.EXPORT_FORMAT, str(exc)))
        return report
    report.problems.extend(problems)
    if report.events_checked == 0:  # an export always holds at least its own audit.export event
        report.problems.append(
            Problem(None, ProblemKind.EXPORT_FORMAT, "the export holds no events")
        )
    if report.events_checked != size:
        report.problems.append(
            Problem(
                None,
                ProblemKind.EXPORT_FORMAT,
                f"trailer says {size} events, the file has {report.events_checked}",
            )
        )
    if report.anchored_size != report.events_checked:
        report.problems.append(
            Problem(
                report.anchored_size + 1,
                ProblemKind.UNANCHORED,
                f"events after {report.anchored_size} are not covered by a signed checkpoint",
            )
        )
    return report
