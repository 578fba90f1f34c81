"""The export format, offline: an honest export verifies; any changed byte does not."""

from __future__ import annotations

from pathlib import Path

from audit_testchain import SIGNER, build_chain
from hypothesis import given, settings
from hypothesis import strategies as st

from labelvault.audit import chain_head_extension, merkle_root, sign_checkpoint
from labelvault.audit.export import (
    event_line,
    event_record,
    iso_ts,
    trailer_line,
    ts_us_of,
    verify_export,
)

CHAIN_ID = "project:7d1c0a54-0000-4000-8000-000000000001"
ORIGIN = f"labelvault/test/{CHAIN_ID}"
KEY = SIGNER.verifier_key()


def _export(n: int = 6) -> bytes:
    chain = build_chain(n, CHAIN_ID)
    root = merkle_root([e.leaf for e in chain])
    last = chain[-1]
    note = sign_checkpoint(
        SIGNER, ORIGIN, n, root, [chain_head_extension(n, last.chain_hash, last.ts_us)]
    )
    return b"".join(event_line(e) for e in chain) + trailer_line(CHAIN_ID, ORIGIN, n, [note])


EXPORT = _export()


def _verify(tmp: Path, data: bytes) -> bool:
    path = tmp / "export.jsonl"
    path.write_bytes(data)
    return verify_export(path, [KEY]).ok


def test_honest_export_verifies(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_bytes(EXPORT)
    report = verify_export(path, [KEY])
    assert report.ok and report.events_checked == 6 and report.anchored_size == 6


def test_records_and_times() -> None:
    chain = build_chain(2, CHAIN_ID)
    record = event_record(chain[0])
    assert record["seq"] == 1 and record["leaf"] == chain[0].leaf.hex()
    assert record["action"] and record["v"] == 1
    assert (
        ts_us_of(
            __import__("datetime").datetime.fromisoformat(
                iso_ts(chain[0].ts_us).replace("Z", "+00:00")
            )
        )
        == chain[0].ts_us
    )


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_changed_byte_is_detected(data: st.DataObject) -> None:
    import tempfile

    offset = data.draw(st.integers(0, len(EXPORT) - 1), label="offset")
    xor = data.draw(st.integers(1, 255), label="xor")
    tampered = bytearray(EXPORT)
    tampered[offset] ^= xor
    with tempfile.TemporaryDirectory() as tmp:
        assert not _verify(Path(tmp), bytes(tampered))


def test_wrong_key_unanchored_and_truncated(tmp_path: Path) -> None:
    from labelvault.audit import Signer

    path = tmp_path / "e.jsonl"
    path.write_bytes(EXPORT)
    other = Signer.from_seed("labelvault-test", bytes(32)).verifier_key()
    assert not verify_export(path, [other]).ok
    lines = EXPORT.splitlines(keepends=True)
    assert not _verify(tmp_path, b"".join(lines[:-2] + lines[-1:]))  # last event dropped
    assert not _verify(tmp_path, b"".join(lines[:-1]))  # trailer dropped
    assert not _verify(tmp_path, EXPORT[:-1])  # no final newline


def test_an_export_without_events_does_not_verify(tmp_path: Path) -> None:
    # a trailer alone (no event, no checkpoint) proves nothing: it is not "ok"
    assert not _verify(tmp_path, trailer_line(CHAIN_ID, ORIGIN, 0, []))
