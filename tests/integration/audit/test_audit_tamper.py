"""A database administrator tampers with the trail; ``labelvault audit verify`` must say where.

Each example runs on a fresh project: ``n`` events, a signed checkpoint at ``n``, then ``m``
more events not yet checkpointed. The tampering runs on the superuser connection with
``session_replication_role = replica`` (every trigger off).
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path

from audit_support import (
    append_events,
    as_dba,
    checkpoint,
    new_project,
    run_cli,
    table,
    verify,
)
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from labelvault.audit import AuditEvent, ProblemKind, canonical_body, leaf_hash, link_hash
from labelvault.audit.checkpointer import project_chain_id, write_note_file
from labelvault.audit.dbverify import DatabaseReport
from labelvault.audit.signing import public_verifier_key
from labelvault.db.bootstrap import DatabaseTarget
from labelvault.platform import Platform

SETTINGS = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
COLUMNS = ["seq", "ts_us", "body", "leaf", "prev_hash", "chain_hash"]


async def _trail(
    platform: Platform, db_target: DatabaseTarget, n: int, m: int
) -> tuple[uuid.UUID, str]:
    pid = await new_project(platform)
    await append_events(platform, pid, n)
    await checkpoint(platform, pid)
    if m:
        await append_events(platform, pid, m, prefix="task")
    key = await public_verifier_key(platform)
    report = await verify(db_target.owner_dsn, pid, key)
    assert report.ok, report.to_json()  # the untouched trail verifies
    return pid, key


def _rows(dsn: str, pid: uuid.UUID) -> list[tuple[int, int, bytes, bytes, bytes, bytes]]:
    import psycopg

    with psycopg.connect(dsn) as conn:
        cur = conn.cursor(binary=True)
        cur.execute(f"SELECT {', '.join(COLUMNS)} FROM {table(pid)} ORDER BY seq")
        return [tuple(r) for r in cur.fetchall()]  # type: ignore[misc]


def _where(report: DatabaseReport) -> set[int | None]:
    assert not report.ok
    return {p.seq for _, p in report.all_problems()}


@SETTINGS
@given(n=st.integers(2, 8), m=st.integers(0, 3), data=st.data())
async def test_any_changed_byte_of_any_column(
    platform: Platform, db_target: DatabaseTarget, n: int, m: int, data: st.DataObject
) -> None:
    pid, key = await _trail(platform, db_target, n, m)
    rows = _rows(db_target.owner_dsn, pid)
    k = data.draw(st.integers(1, n + m), label="seq")
    column = data.draw(st.sampled_from(COLUMNS), label="column")
    xor = data.draw(st.integers(1, 255), label="xor")
    row = dict(zip(COLUMNS, rows[k - 1], strict=True))
    value = row[column]
    new_seq = None
    if isinstance(value, int):
        raw = bytearray(value.to_bytes(8, "big", signed=True))
        i = data.draw(st.integers(0, 7), label="byte")
        raw[i] ^= xor
        new = int.from_bytes(raw, "big", signed=True)
        if column == "seq":
            assume(not 1 <= new <= n + m)  # the primary key still holds
            new_seq = new
        sql = f"UPDATE {table(pid)} SET {column} = %s WHERE seq = %s"
        as_dba(db_target.owner_dsn, [(sql, [new, k])])
    else:
        i = data.draw(st.integers(0, len(value) - 1), label="byte")
        sql = (
            f"UPDATE {table(pid)} SET {column} = set_byte({column}, %s, "
            f"get_byte({column}, %s) # %s) WHERE seq = %s"
        )
        as_dba(db_target.owner_dsn, [(sql, [i, i, xor, k])])
    report = await verify(db_target.owner_dsn, pid, key)
    assert _where(report) & {k, k + 1, new_seq}, report.to_json()


@SETTINGS
@given(n=st.integers(2, 8), m=st.integers(0, 3), data=st.data())
async def test_any_deleted_event(
    platform: Platform, db_target: DatabaseTarget, n: int, m: int, data: st.DataObject
) -> None:
    # the newest event after the last checkpoint can vanish unnoticed: checkpoints bound that
    k = data.draw(st.integers(1, n + m - 1 if m else n), label="seq")
    pid, key = await _trail(platform, db_target, n, m)
    as_dba(db_target.owner_dsn, [(f"DELETE FROM {table(pid)} WHERE seq = %s", [k])])
    report = await verify(db_target.owner_dsn, pid, key)
    # the gap shows at the next event; deleting the newest covered one is a truncation at k
    assert _where(report) & {k, k + 1}, report.to_json()


@SETTINGS
@given(n=st.integers(2, 8), m=st.integers(0, 3), data=st.data())
async def test_any_reordering(
    platform: Platform, db_target: DatabaseTarget, n: int, m: int, data: st.DataObject
) -> None:
    a = data.draw(st.integers(1, n + m - 1), label="a")
    b = data.draw(st.integers(a + 1, n + m), label="b")
    pid, key = await _trail(platform, db_target, n, m)
    t = table(pid)
    as_dba(
        db_target.owner_dsn,
        [
            (f"UPDATE {t} SET seq = -1 WHERE seq = %s", [a]),
            (f"UPDATE {t} SET seq = %s WHERE seq = %s", [a, b]),
            (f"UPDATE {t} SET seq = %s WHERE seq = -1", [b]),
        ],
    )
    report = await verify(db_target.owner_dsn, pid, key)
    assert {a, b} <= _where(report), report.to_json()


@SETTINGS
@given(n=st.integers(1, 8), m=st.integers(0, 3), data=st.data())
async def test_truncating_below_a_checkpoint(
    platform: Platform, db_target: DatabaseTarget, n: int, m: int, data: st.DataObject
) -> None:
    keep = data.draw(st.integers(0, n - 1), label="keep")
    pid, key = await _trail(platform, db_target, n, m)
    as_dba(db_target.owner_dsn, [(f"DELETE FROM {table(pid)} WHERE seq > %s", [keep])])
    report = await verify(db_target.owner_dsn, pid, key)
    kinds = {(p.seq, p.kind) for _, p in report.all_problems()}
    assert (keep + 1, ProblemKind.TRUNCATED) in kinds, report.to_json()


def _forge(dsn: str, pid: uuid.UUID, at: int) -> None:
    """Insert a forged event at ``at`` and rewrite the tail so that every link recomputes."""
    rows = _rows(dsn, pid)
    forged = canonical_body(
        AuditEvent(action="item.delete", outcome="success", actor_kind="system", actor_id="nobody")
    )
    bodies = [r[2] for r in rows]
    stamps = [r[1] for r in rows]
    bodies.insert(at - 1, forged)
    stamps.insert(at - 1, stamps[at - 2] if at > 1 else stamps[0])
    prev = rows[at - 2][5] if at > 1 else rows[0][4]
    statements: list[tuple[str, list[object]]] = [
        (f"DELETE FROM {table(pid)} WHERE seq >= %s", [at])
    ]
    for seq in range(at, len(bodies) + 1):
        body, ts = bodies[seq - 1], stamps[seq - 1]
        leaf = leaf_hash(body)
        chain = link_hash(prev, seq, ts, leaf)
        statements.append(
            (
                f"INSERT INTO {table(pid)} (seq, ts_us, body, leaf, prev_hash, "
                "chain_hash) VALUES (%s, %s, %s, %s, %s, %s)",
                [seq, ts, body, leaf, prev, chain],
            )
        )
        prev = chain
    as_dba(dsn, statements)  # type: ignore[arg-type]


@SETTINGS
@given(n=st.integers(1, 8), m=st.integers(0, 3), data=st.data())
async def test_forged_event_with_recomputed_links(
    platform: Platform, db_target: DatabaseTarget, n: int, m: int, data: st.DataObject
) -> None:
    at = data.draw(st.integers(1, n), label="at")
    pid, key = await _trail(platform, db_target, n, m)
    _forge(db_target.owner_dsn, pid, at)
    report = await verify(db_target.owner_dsn, pid, key)
    problems = {(p.seq, p.kind) for _, p in report.all_problems()}
    assert (n, ProblemKind.CHECKPOINT_ROOT_MISMATCH) in problems, report.to_json()
    assert all(p.kind.value.startswith("checkpoint") for _, p in report.all_problems())


async def test_forgery_that_also_removes_the_checkpoints_is_caught_by_the_directory(
    platform: Platform, db_target: DatabaseTarget, tmp_path: Path
) -> None:
    pid, key = await _trail(platform, db_target, 6, 2)
    chain = project_chain_id(pid)
    import psycopg

    with psycopg.connect(db_target.owner_dsn) as conn:
        row = conn.execute(
            "SELECT size, note FROM lv_control.audit_checkpoints WHERE chain_id = %s", [chain]
        ).fetchone()
    assert row is not None
    write_note_file(tmp_path, chain, row[0], row[1])
    assert (await verify(db_target.owner_dsn, pid, key, checkpoint_dir=tmp_path)).ok
    _forge(db_target.owner_dsn, pid, 3)
    as_dba(
        db_target.owner_dsn,
        [("DELETE FROM lv_control.audit_checkpoints WHERE chain_id = %s", [chain])],
    )
    # without the directory the rewritten chain is self-consistent ...
    assert (await verify(db_target.owner_dsn, pid, key)).ok
    # ... the external directory catches it
    report = await verify(db_target.owner_dsn, pid, key, checkpoint_dir=tmp_path)
    kinds = {(p.seq, p.kind) for _, p in report.all_problems()}
    assert (6, ProblemKind.CHECKPOINT_MISSING) in kinds
    assert (6, ProblemKind.CHECKPOINT_ROOT_MISMATCH) in kinds

    # and the truncation of the chain below the directory's checkpoint
    as_dba(db_target.owner_dsn, [(f"DELETE FROM {table(pid)} WHERE seq > 4", [])])
    report = await verify(db_target.owner_dsn, pid, key, checkpoint_dir=tmp_path)
    assert (5, ProblemKind.TRUNCATED) in {(p.seq, p.kind) for _, p in report.all_problems()}


async def test_a_different_public_key_rejects_the_checkpoints(
    platform: Platform, db_target: DatabaseTarget
) -> None:
    from labelvault.audit import Signer

    pid, _ = await _trail(platform, db_target, 3, 0)
    stranger = Signer.from_seed("labelvault-local", bytes(32)).verifier_key()
    report = await verify(db_target.owner_dsn, pid, stranger)
    assert (3, ProblemKind.CHECKPOINT_SIGNATURE) in {
        (p.seq, p.kind) for _, p in report.all_problems()
    }


async def test_the_real_cli_reports_tampering_and_exits_non_zero(
    platform: Platform, db_target: DatabaseTarget, tmp_path: Path
) -> None:
    pid, key = await _trail(platform, db_target, 5, 1)
    keyfile = tmp_path / "key.pub"
    keyfile.write_text(key + "\n")
    env = {**os.environ, "LABELVAULT_AUDIT_VERIFY_DSN": db_target.owner_dsn}
    cmd = [
        str(Path(sys.executable).parent / "labelvault"),
        "audit",
        "verify",
        "--project",
        str(pid),
        "--public-key",
        f"@{keyfile}",
        "--json",
    ]
    ok = await run_cli(cmd, env=env, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert json.loads(ok.stdout)["ok"] is True
    as_dba(
        db_target.owner_dsn,
        [
            (
                f"UPDATE {table(pid)} SET body = set_byte(body, 3, get_byte(body, 3) # 1) "
                "WHERE seq = 4",
                [],
            )
        ],
    )
    bad = await run_cli(cmd, env=env, text=True)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    out = json.loads(bad.stdout)
    problems = out["chains"][0]["problems"]
    assert {"seq": 4, "kind": "leaf_mismatch"} in [
        {"seq": p["seq"], "kind": p["kind"]} for p in problems
    ]
    text = await run_cli(cmd[:-1], env=env, text=True)
    assert text.returncode == 1
    assert f"project:{pid} seq 4 leaf_mismatch" in text.stdout
