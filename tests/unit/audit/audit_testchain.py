"""Builds audit chains exactly as the PostgreSQL append statement would."""

from __future__ import annotations

import hashlib

from labelvault.audit import (
    AuditEvent,
    Checkpoint,
    Signer,
    StoredEvent,
    canonical_body,
    chain_head_extension,
    genesis_hash,
    merkle_root,
    parse_and_verify,
    sign_checkpoint,
)

CHAIN_ID = "project:7d1c0a54-0000-4000-8000-000000000001"
ORIGIN = "audit.labelvault.test/project/7d1c0a54"
SIGNER = Signer.from_seed("labelvault-audit-test", bytes(range(32)))
START_TS = 1_767_225_600_000_000


def sample_event(i: int) -> AuditEvent:
    return AuditEvent(
        action="item.read" if i % 3 else "auth.login.failed",
        outcome="success" if i % 3 else "denied",
        actor_kind="user",
        actor_id=f"user-{i % 5}",
        session_ref=f"sess-{i % 7}",
        source_address="192.0.2.10",
        user_agent="pytest/1.0",
        resource_type="item",
        resource_id=f"item-{i}",
        project_id="7d1c0a54",
        request_id=f"req-{i}",
        details={"n": i, "ok": bool(i % 2)},
    )


def sql_link(prev_hash: bytes, seq: int, ts_us: int, leaf: bytes) -> bytes:
    """sha256(prev_hash || int8send(seq) || int8send(ts_us) || leaf), restated independently."""
    return hashlib.sha256(
        prev_hash
        + seq.to_bytes(8, "big", signed=True)
        + ts_us.to_bytes(8, "big", signed=True)
        + leaf
    ).digest()


def append(chain: list[StoredEvent], chain_id: str, body: bytes, ts_us: int) -> StoredEvent:
    prev = chain[-1].chain_hash if chain else genesis_hash(chain_id)
    seq = chain[-1].seq + 1 if chain else 1
    leaf = hashlib.sha256(b"\x00" + body).digest()
    row = StoredEvent(seq, ts_us, body, leaf, prev, sql_link(prev, seq, ts_us, leaf))
    chain.append(row)
    return row


def build_chain(n: int, chain_id: str = CHAIN_ID, *, ts_step: int = 1_000) -> list[StoredEvent]:
    chain: list[StoredEvent] = []
    for i in range(n):
        # equal timestamps are allowed (clock resolution); ts never decreases
        append(chain, chain_id, canonical_body(sample_event(i)), START_TS + (i // 2) * ts_step)
    return chain


def checkpoint(chain: list[StoredEvent], size: int, signer: Signer = SIGNER) -> Checkpoint:
    """A signed, parsed checkpoint over the first ``size`` events of an honest chain."""
    if size:
        head = chain[size - 1]
        ext = chain_head_extension(size, head.chain_hash, head.ts_us)
    else:
        ext = chain_head_extension(0, genesis_hash(CHAIN_ID), START_TS)
    root = merkle_root([e.leaf for e in chain[:size]])
    note = sign_checkpoint(signer, ORIGIN, size, root, [ext])
    return parse_and_verify(note, [signer.verifier_key()])
