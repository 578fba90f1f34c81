"""The verifier detects every edit, deletion, insertion, reordering and truncation."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest
from audit_testchain import (
    CHAIN_ID,
    ORIGIN,
    START_TS,
    append,
    build_chain,
    checkpoint,
    sample_event,
    sql_link,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import labelvault.audit.verify as verify_module
from labelvault.audit import (
    AuditEvent,
    ProblemKind,
    StoredEvent,
    VerificationReport,
    canonical_body,
    verify_chain,
)

FIELDS = ("body", "leaf", "prev_hash", "chain_hash", "seq", "ts_us")
CHAIN = build_chain(14)
FULL_CP = checkpoint(CHAIN, len(CHAIN))


def verify(
    events: list[StoredEvent], cps: tuple[object, ...] = (), **kw: object
) -> VerificationReport:
    return verify_chain(CHAIN_ID, events, cps, expected_origin=ORIGIN, **kw)  # type: ignore[arg-type]


def kinds(report: VerificationReport) -> set[ProblemKind]:
    return {p.kind for p in report.problems}


def flip_byte(e: StoredEvent, name: str, index: int, xor: int) -> StoredEvent:
    value = getattr(e, name)
    if isinstance(value, int):
        raw = bytearray(value.to_bytes(8, "big", signed=True))
        raw[index % 8] ^= xor
        return e._replace(**{name: int.from_bytes(raw, "big", signed=True)})
    raw = bytearray(value)
    raw[index % len(raw)] ^= xor
    return e._replace(**{name: bytes(raw)})


n_events = st.integers(1, 14)


def test_honest_chain_verifies_with_checkpoints_at_every_size() -> None:
    cps = tuple(checkpoint(CHAIN, k) for k in range(len(CHAIN) + 1))
    report = verify(CHAIN, cps, check_bodies=True)
    assert report.ok, report.problems
    assert (report.events_checked, report.checkpoints_checked) == (14, 15)
    assert report.anchored_size == 14 and report.head_seq == 14
    assert report.head_hash == CHAIN[-1].chain_hash
    assert json.loads(report.to_json())["ok"] is True


def test_empty_chain() -> None:
    assert verify([]).ok
    assert verify([], (checkpoint([], 0),)).ok
    r = verify([], (checkpoint(CHAIN, 3),))
    assert (
        not r.ok
        and r.problems[0].message == "checkpoint at size 3 but chain has 0 events: truncated"
    )


@given(n_events, st.booleans())
def test_untouched_chain_always_verifies(n: int, with_cp: bool) -> None:
    chain = CHAIN[:n]
    assert verify(chain, (checkpoint(chain, n),) if with_cp else ()).ok


@settings(max_examples=300)
@given(
    n_events,
    st.data(),
    st.sampled_from(FIELDS),
    st.integers(0, 10_000),
    st.integers(1, 255),
    st.booleans(),
)
def test_any_single_byte_change_is_detected(
    n: int, data: st.DataObject, name: str, index: int, xor: int, with_cp: bool
) -> None:
    chain = list(CHAIN[:n])
    i = data.draw(st.integers(0, n - 1))
    chain[i] = flip_byte(chain[i], name, index, xor)
    cps = (checkpoint(CHAIN, n),) if with_cp else ()
    report = verify(chain, cps)
    assert not report.ok
    where = {i + 1, i + 2, chain[i].seq}  # the row itself, or the link of the next row
    assert any(p.seq in where for p in report.problems), report.problems


@given(st.integers(2, 14), st.data())
def test_deleting_any_event_is_detected(n: int, data: st.DataObject) -> None:
    i = data.draw(st.integers(0, n - 1))
    chain = [e for j, e in enumerate(CHAIN[:n]) if j != i]
    report = verify(chain, (checkpoint(CHAIN, n),))
    assert not report.ok
    if i < n - 1:  # a middle deletion is caught by the chain alone
        assert {ProblemKind.SEQ_GAP, ProblemKind.LINK_BROKEN} <= kinds(verify(chain))
    else:
        assert kinds(report) == {ProblemKind.TRUNCATED}


def test_deletion_message_names_the_gap() -> None:
    chain = [e for e in CHAIN if e.seq not in (4, 5)]
    report = verify(chain)
    gap = [p for p in report.problems if p.kind is ProblemKind.SEQ_GAP]
    assert gap[0].seq == 6 and gap[0].message.startswith("expected seq 4, found 6")
    assert {p.kind for p in report.problems if p.seq == 6} == {
        ProblemKind.SEQ_GAP,
        ProblemKind.LINK_BROKEN,
    }
    assert all(p.seq == 6 for p in report.problems)  # localised, no cascade


@given(st.integers(2, 14), st.data())
def test_swapping_two_events_is_detected(n: int, data: st.DataObject) -> None:
    i = data.draw(st.integers(0, n - 2))
    j = data.draw(st.integers(i + 1, n - 1))
    chain = list(CHAIN[:n])
    chain[i], chain[j] = chain[j], chain[i]
    report = verify(chain)
    assert not report.ok
    assert ProblemKind.SEQ_GAP in kinds(report) or ProblemKind.SEQ_ORDER in kinds(report)


@given(st.integers(1, 14), st.data())
def test_truncation_below_a_checkpoint_is_detected(n: int, data: st.DataObject) -> None:
    keep = data.draw(st.integers(0, n - 1))
    report = verify(CHAIN[:keep], (checkpoint(CHAIN, n),))
    assert not report.ok
    assert report.problems[-1].message == (
        f"checkpoint at size {n} but chain has {keep} events: truncated"
    )


def _forged(prev: StoredEvent | None, seq: int, ts: int) -> StoredEvent:
    body = canonical_body(
        AuditEvent(action="item.read", outcome="success", actor_kind="system", actor_id="forger")
    )
    prev_hash = prev.chain_hash if prev else CHAIN[0].prev_hash
    leaf = hashlib.sha256(b"\x00" + body).digest()
    return StoredEvent(seq, ts, body, leaf, prev_hash, sql_link(prev_hash, seq, ts, leaf))


@given(st.integers(1, 14), st.data(), st.booleans())
def test_inserting_a_self_consistent_forged_event_is_detected(
    n: int, data: st.DataObject, with_cp: bool
) -> None:
    p = data.draw(st.integers(0, n - 1))  # insert before CHAIN[p]
    prev = CHAIN[p - 1] if p else None
    forged = _forged(prev, prev.seq + 1 if prev else 1, prev.ts_us if prev else START_TS)
    chain = [*CHAIN[:p], forged, *CHAIN[p:n]]
    report = verify(chain, (checkpoint(CHAIN, n),) if with_cp else ())
    assert not report.ok
    assert ProblemKind.LINK_BROKEN in kinds(report)


@given(st.integers(1, 14), st.data())
def test_forged_insertion_with_rewritten_tail_is_caught_by_checkpoint(
    n: int, data: st.DataObject
) -> None:
    """The attacker re-links and renumbers everything after the insertion."""
    p = data.draw(st.integers(0, n - 1))
    chain: list[StoredEvent] = list(CHAIN[:p])
    forged_body = canonical_body(sample_event(999))
    append(chain, CHAIN_ID, forged_body, chain[-1].ts_us if chain else START_TS)
    for e in CHAIN[p:n]:
        append(chain, CHAIN_ID, e.body, e.ts_us)
    assert verify(chain).ok  # a full rewrite fools the chain alone...
    report = verify(chain, (checkpoint(CHAIN, n),))
    assert kinds(report) == {
        ProblemKind.CHECKPOINT_ROOT_MISMATCH,
        ProblemKind.CHECKPOINT_HEAD_MISMATCH,
    }  # ...but not the signed checkpoint


def test_transplant_to_another_chain_is_detected() -> None:
    report = verify_chain("project:other", CHAIN, expected_origin=ORIGIN)
    assert [p.kind for p in report.problems] == [ProblemKind.LINK_BROKEN]
    assert report.problems[0].seq == 1


def test_ts_going_backwards_is_reported() -> None:
    chain: list[StoredEvent] = []
    for i, ts in enumerate([10, 20, 15, 30]):
        append(chain, CHAIN_ID, canonical_body(sample_event(i)), ts)
    report = verify(chain)
    assert [(p.seq, p.kind) for p in report.problems] == [(3, ProblemKind.TS_BACKWARDS)]


def test_foreign_origin_checkpoint_is_reported() -> None:
    cp = dataclasses.replace(FULL_CP, origin="audit.example/other")
    report = verify(CHAIN, (cp,))
    assert kinds(report) == {ProblemKind.CHECKPOINT_ORIGIN}
    assert report.checkpoints_checked == 0


def test_invalid_body_only_with_check_bodies() -> None:
    chain: list[StoredEvent] = []
    append(chain, CHAIN_ID, b'{"not":"an event"}', START_TS)
    assert verify(chain).ok
    report = verify(chain, check_bodies=True)
    assert kinds(report) == {ProblemKind.INVALID_BODY}


def test_malformed_rows_are_reported_not_raised() -> None:
    bad = CHAIN[2]._replace(leaf=b"short")
    report = verify([*CHAIN[:2], bad, *CHAIN[3:]])
    assert ProblemKind.MALFORMED_EVENT in kinds(report)
    huge = CHAIN[2]._replace(seq=2**70)
    assert ProblemKind.MALFORMED_EVENT in kinds(verify([*CHAIN[:2], huge, *CHAIN[3:]]))


def test_problem_cap() -> None:
    shuffled = list(reversed(CHAIN))
    report = verify(shuffled, max_problems=3)
    assert len(report.problems) == 3 and report.problems_omitted > 0 and not report.ok
    data = json.loads(report.to_json())
    assert data["problems_omitted"] == report.problems_omitted
    assert data["problems"][0]["kind"] in {k.value for k in ProblemKind}


def test_checkpoints_across_merkle_batches() -> None:
    """Roots snapshotted in the streaming pass equal merkle_root at batch-unaligned sizes."""
    chain: list[StoredEvent] = []
    body = canonical_body(sample_event(1))
    for i in range(9_000):
        append(chain, CHAIN_ID, body + str(i).encode(), START_TS + i)
    sizes = (1, 3, 4095, 4096, 4097, 5000, 8191, 8192, 9_000)
    cps = tuple(checkpoint(chain, k) for k in sizes)
    report = verify(chain, cps)
    assert report.ok, report.problems
    assert report.checkpoints_checked == len(sizes) and report.anchored_size == 9_000
    tampered = list(chain)
    forged_body = body + b"forged"
    forged_leaf = hashlib.sha256(b"\x00" + forged_body).digest()
    tampered[4500] = tampered[4500]._replace(body=forged_body, leaf=forged_leaf)
    report = verify(tampered, cps)
    assert {p.seq for p in report.problems} == {4501, 5000, 8191, 8192, 9000}


def test_an_absurdly_nested_body_is_reported_never_a_crash() -> None:
    from labelvault.audit.dbverify import _org_checked

    problems: list[object] = []
    rows = [(1, 0, b"[" * 65536, b"\x00" * 32, b"\x00" * 32, b"\x00" * 32, None)]
    events = list(_org_checked(rows, problems))  # type: ignore[arg-type]
    assert [e[0] for e in events] == [1]


MALFORMED = st.sampled_from(
    [
        lambda e: e._replace(leaf=b"short"),
        lambda e: e._replace(chain_hash=None),
        lambda e: e._replace(body="text, not bytes"),
        lambda e: e._replace(seq=2**70),
        lambda e: e._replace(ts_us=-(2**70)),
        lambda e: e._replace(prev_hash=memoryview(e.prev_hash)),
        lambda e: tuple(e)[:4],
    ]
)


@settings(max_examples=200)
@given(
    st.integers(1, 14),
    st.data(),
    st.lists(st.tuples(st.sampled_from(FIELDS), st.integers(0, 10_000), st.integers(1, 255))),
    st.sets(st.integers(0, 14)),
    st.lists(MALFORMED, max_size=2),
    st.sampled_from([1, 3, 1000]),
)
def test_batches_report_what_row_by_row_checking_reports(
    n: int,
    data: st.DataObject,
    flips: list[tuple[str, int, int]],
    sizes: set[int],
    breakages: list[object],
    max_problems: int,
) -> None:
    """Rows are checked a batch at a time, a batch that is not clean row by row: whatever the
    batch size, the report is the one of a row-by-row pass (batch size 1), malformed rows, the
    problem cap and checkpoints included, and it never raises."""
    chain: list[object] = list(CHAIN[:n])
    for name, index, xor in flips:
        i = data.draw(st.integers(0, n - 1))
        chain[i] = flip_byte(chain[i], name, index, xor)  # type: ignore[arg-type]
    if data.draw(st.booleans()) and n > 2:  # and perhaps a deletion or a swap
        i = data.draw(st.integers(0, n - 2))
        if data.draw(st.booleans()):
            del chain[i]
        else:
            chain[i], chain[i + 1] = chain[i + 1], chain[i]
    for breakage in breakages:
        i = data.draw(st.integers(0, len(chain) - 1))
        if isinstance(chain[i], StoredEvent):
            chain[i] = breakage(chain[i])  # type: ignore[operator]
    cps = tuple(checkpoint(CHAIN, k) for k in sorted(sizes) if k <= n)
    reports = []
    for batch in (1, 2, 5, 4096):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(verify_module, "_BATCH", batch)
            reports.append(
                verify(chain, cps, check_bodies=True, max_problems=max_problems)  # type: ignore[arg-type]
            )
    assert all(r == reports[0] for r in reports[1:]), [r.problems for r in reports]
    assert reports[0].ok == (chain == CHAIN[:n])
