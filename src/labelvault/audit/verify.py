"""The audit verifier core: one streaming pass over a chain and its checkpoints.

Database-agnostic: feed it the chain's rows in ``seq`` order (any iterable, e.g. a server-side
cursor) and the signature-verified checkpoints for the chain. It checks, for every event, that
``seq`` is contiguous from 1, that ``leaf == SHA-256(0x00 || body)``, that ``prev_hash`` is the
previous row's ``chain_hash`` (the genesis hash for seq 1), that ``chain_hash`` recomputes, and
that timestamps never go backwards. In the same pass it maintains the RFC 9162 tree over the
stored leaves and, when the count reaches a checkpoint's size, compares the root and the chain
head with the checkpoint. A checkpoint larger than the chain means the chain was truncated.

Each problem is reported at the row where it is observed; checks compare with the *stored*
values of the previous row, so one altered row yields a few local problems, not a cascade.
Without a checkpoint covering it, deletion of the newest events cannot be detected by any hash
chain: checkpoint often and keep checkpoints outside the database.
"""

from __future__ import annotations

import enum
import hashlib
import itertools
import json
import struct
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Final

from labelvault.audit.chain import EventRow, clean_run, genesis_hash
from labelvault.audit.checkpoint import Checkpoint
from labelvault.audit.events import InvalidAuditEventError, decode_event
from labelvault.audit.merkle import EMPTY_ROOT, MerkleAccumulator

DEFAULT_MAX_PROBLEMS: Final = 1000
_BATCH: Final = 4096  # rows checked at a time
_INT8X2: Final = struct.Struct(">qq")
_MIN_INT8: Final = -(2**63)
_ZERO: Final = bytes(32)


class ProblemKind(enum.StrEnum):
    SEQ_GAP = "seq_gap"
    SEQ_ORDER = "seq_order"  # duplicate or out of order
    LEAF_MISMATCH = "leaf_mismatch"
    LINK_BROKEN = "link_broken"
    CHAIN_HASH_MISMATCH = "chain_hash_mismatch"
    TS_BACKWARDS = "ts_backwards"
    MALFORMED_EVENT = "malformed_event"
    INVALID_BODY = "invalid_body"
    CHECKPOINT_ORIGIN = "checkpoint_origin"
    CHECKPOINT_ROOT_MISMATCH = "checkpoint_root_mismatch"
    CHECKPOINT_HEAD_MISMATCH = "checkpoint_head_mismatch"
    TRUNCATED = "truncated"
    # found by the database / export verifiers around the core (dbverify, export)
    CHECKPOINT_SIGNATURE = "checkpoint_signature"  # unsigned, badly signed or malformed note
    CHECKPOINT_MISSING = "checkpoint_missing"  # in the external directory, not in the database
    CHECKPOINT_DIFFERS = "checkpoint_differs"  # directory and database notes of a size differ
    CHAIN_MISSING = "chain_missing"  # checkpoints exist for a chain whose table is gone
    ORG_MISMATCH = "org_mismatch"  # control chain: org_id column differs from the body's
    UNANCHORED = "unanchored"  # an export whose end is not covered by a signed checkpoint
    EXPORT_FORMAT = "export_format"  # an export line that is not exactly as written
    READER = "reader"  # the reading role cannot see every row (row-level security)


@dataclass(frozen=True, slots=True)
class Problem:
    seq: int | None
    kind: ProblemKind
    message: str


@dataclass(slots=True)
class VerificationReport:
    chain_id: str
    problems: list[Problem] = field(default_factory=list)
    problems_omitted: int = 0
    events_checked: int = 0
    checkpoints_checked: int = 0
    head_seq: int = 0
    head_hash: bytes = b""
    anchored_size: int = 0  # the largest checkpoint size that verified

    @property
    def ok(self) -> bool:
        return not self.problems and not self.problems_omitted

    def to_json(self) -> str:
        data = asdict(self)
        data["ok"] = self.ok
        data["head_hash"] = self.head_hash.hex()
        return json.dumps(data, sort_keys=True)


class _Collector:
    __slots__ = ("limit", "report")

    def __init__(self, report: VerificationReport, limit: int) -> None:
        self.report = report
        self.limit = limit

    def add(self, seq: int | None, kind: ProblemKind, message: str) -> None:
        if len(self.report.problems) < self.limit:
            self.report.problems.append(Problem(seq, kind, message))
        else:
            self.report.problems_omitted += 1


def verify_chain(
    chain_id: str,
    events: Iterable[EventRow],
    checkpoints: Iterable[Checkpoint] = (),
    *,
    expected_origin: str,
    check_bodies: bool = False,
    max_problems: int = DEFAULT_MAX_PROBLEMS,
) -> VerificationReport:
    """Verify one chain (rows in ``seq`` order) against its checkpoints; never raises on tamper.

    ``checkpoints`` must already be signature-verified (:func:`parse_and_verify`); ones whose
    origin is not ``expected_origin`` are reported and ignored. ``check_bodies`` additionally
    decodes every body strictly (about 10x slower).
    """
    report = VerificationReport(chain_id)
    out = _Collector(report, max_problems)
    pending: dict[int, list[Checkpoint]] = {}
    for cp in checkpoints:
        if cp.origin != expected_origin:
            out.add(None, ProblemKind.CHECKPOINT_ORIGIN, f"checkpoint origin {cp.origin!r}")
        else:
            pending.setdefault(cp.size, []).append(cp)
    genesis = genesis_hash(chain_id)

    def check_checkpoints(size: int, root: bytes, seq: int, head: bytes, ts: int) -> None:
        for cp in pending[size]:
            report.checkpoints_checked += 1
            good = True
            if cp.root != root:
                good = False
                out.add(
                    seq if size else None,
                    ProblemKind.CHECKPOINT_ROOT_MISMATCH,
                    f"checkpoint at size {size}: Merkle root of the first {size} leaves differs",
                )
            if (cp.chain_seq, cp.chain_head, cp.ts_us) != (seq, head, ts):
                good = False
                out.add(
                    seq if size else None,
                    ProblemKind.CHECKPOINT_HEAD_MISMATCH,
                    f"checkpoint at size {size}: chain head (seq {cp.chain_seq}) differs "
                    f"from event seq {seq}",
                )
            if good:
                report.anchored_size = max(report.anchored_size, size)

    if 0 in pending:
        check_checkpoints(0, EMPTY_ROOT, 0, genesis, pending[0][0].ts_us)
    run = _Run(out, genesis, sorted(pending), check_checkpoints, check_bodies=check_bodies)
    run.consume(events)

    n = report.events_checked = run.n
    report.head_seq = run.seq
    report.head_hash = run.state[1]
    for size in sorted(size for size in pending if size > n):
        report.checkpoints_checked += len(pending[size])
        out.add(
            n + 1,  # the first event that is missing
            ProblemKind.TRUNCATED,
            f"checkpoint at size {size} but chain has {n} events: truncated",
        )
    return report


class _Run:
    """One pass over a chain in batches: each checked whole by :func:`clean_run`; in a batch
    that is not clean, each row again, and a row that is not clean diagnosed. ``state`` is (the
    seq the next row must have, the chain hash and ts of the last row), exactly as a row-by-row
    pass leaves it. Batches end at every checkpoint size, where the tree's root is compared
    (``at_checkpoint``) before any later row is looked at."""

    def __init__(
        self,
        out: _Collector,
        genesis: bytes,
        sizes: list[int],
        at_checkpoint: Callable[[int, bytes, int, bytes, int], None],
        *,
        check_bodies: bool,
    ) -> None:
        self.out = out
        self.check_bodies = check_bodies
        self.at_checkpoint = at_checkpoint
        self.cuts = [size for size in sizes if size > 0]
        self.merkle_until = max(sizes, default=0)  # leaves past the last checkpoint: not needed
        self.state: tuple[int, bytes, int] = (1, genesis, _MIN_INT8)
        self.seq = 0
        self.n = 0  # rows checked
        self.tree = MerkleAccumulator()

    def consume(self, events: Iterable[EventRow]) -> None:
        it = iter(events)
        cut = iter(self.cuts)
        next_cut = next(cut, None)
        while True:
            while next_cut is not None and next_cut <= self.n:
                next_cut = next(cut, None)
            limit = _BATCH if next_cut is None else min(_BATCH, next_cut - self.n)
            rows = list(itertools.islice(it, limit))
            if not rows:
                return
            self._check(rows)
            if self.n == next_cut:
                self.at_checkpoint(self.n, self.tree.root(), self.seq, *self.state[1:])

    def _check(self, rows: list[EventRow]) -> None:
        end = _end_state(rows) if clean_run(rows, *self.state) else None
        if end is not None:
            self.state, self.seq = end, end[0] - 1
            leaves = [row[3] for row in rows]
            if self.check_bodies:
                for row in rows:
                    self._check_body(row[0], row[2])
        else:
            leaves = [self._check_row(n, row) for n, row in enumerate(rows, self.n + 1)]
        self.n += len(rows)
        if self.n <= self.merkle_until:
            self.tree.extend(leaves)

    def _check_row(self, n: int, row: EventRow) -> bytes:
        """One row of a batch that is not clean: the fast check, else the diagnosis. Returns
        the leaf the tree takes for it."""
        end = _end_state([row]) if clean_run([row], *self.state) else None
        if end is not None:
            self.state, self.seq = end, end[0] - 1
            leaf = row[3]
        else:
            expected, prev_chain, prev_ts = self.state
            expected, self.seq, prev_ts, leaf, prev_chain = _diagnose(
                row, n, expected, prev_chain, prev_ts, self.out
            )
            self.state = (expected, prev_chain, prev_ts)
        if self.check_bodies:
            body = row[2] if isinstance(row, tuple) and len(row) == 6 else None
            self._check_body(self.seq, body)
        return leaf

    def _check_body(self, seq: int, body: object) -> None:
        try:
            if not isinstance(body, bytes):
                raise InvalidAuditEventError("the body is not bytes")
            decode_event(body)
        except InvalidAuditEventError as exc:
            self.out.add(seq, ProblemKind.INVALID_BODY, f"seq {seq}: {exc.message}")


def _end_state(rows: list[EventRow]) -> tuple[int, bytes, int] | None:
    """The state after ``rows`` if they are clean (None if they cannot be: malformed)."""
    try:
        seq, ts, _, _, _, chain = rows[-1]
        return seq + 1, chain, ts
    except (TypeError, ValueError):
        return None


def _diagnose(
    e: EventRow, n: int, expected: int, prev_chain: bytes, prev_ts: int, out: _Collector
) -> tuple[int, int, int, bytes, bytes]:
    """Report what is wrong with row ``e``; return (next expected seq, seq, ts, leaf, chain)."""
    try:
        seq, ts, body, leaf, prev, chain = e
    except (TypeError, ValueError):
        out.add(None, ProblemKind.MALFORMED_EVENT, f"event #{n} in the stream is malformed")
        return expected + 1, expected, prev_ts, _ZERO, _ZERO
    try:
        computed_leaf = hashlib.sha256(b"\x00" + body).digest()
        computed_chain = hashlib.sha256(prev + _INT8X2.pack(seq, ts) + leaf).digest()
        well_formed = len(leaf) == 32 and len(chain) == 32 and ts >= _MIN_INT8
    except (TypeError, struct.error, OverflowError):
        well_formed = False
    if not well_formed:
        out.add(None, ProblemKind.MALFORMED_EVENT, f"event #{n} in the stream is malformed")
        leaf = leaf if type(leaf) is bytes and len(leaf) == 32 else _ZERO
        chain = chain if type(chain) is bytes else _ZERO
        return expected + 1, expected, prev_ts, leaf, chain
    if seq > expected:
        missing = seq - expected
        out.add(
            seq,
            ProblemKind.SEQ_GAP,
            f"expected seq {expected}, found {seq}: {missing} event(s) missing",
        )
        expected = seq + 1
    elif seq < expected:
        out.add(
            seq,
            ProblemKind.SEQ_ORDER,
            f"expected seq {expected}, found {seq}: duplicate or out of order",
        )
    else:
        expected += 1
    if computed_leaf != leaf:
        out.add(seq, ProblemKind.LEAF_MISMATCH, f"seq {seq}: leaf != SHA-256(0x00||body)")
    if prev != prev_chain:
        out.add(
            seq,
            ProblemKind.LINK_BROKEN,
            f"seq {seq}: prev_hash is not the chain hash of the preceding event",
        )
    if computed_chain != chain:
        out.add(
            seq,
            ProblemKind.CHAIN_HASH_MISMATCH,
            f"seq {seq}: stored chain_hash differs from the recomputed link hash",
        )
    if ts < prev_ts:
        out.add(
            seq,
            ProblemKind.TS_BACKWARDS,
            f"seq {seq}: ts_us {ts} is before the preceding event's {prev_ts}",
        )
    return expected, seq, ts, leaf, chain
