"""The audit chains on a real PostgreSQL: appends, rollbacks, privileges, concurrency,
checkpoints and the database verifier."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import stat
import uuid
from pathlib import Path

import psycopg
import pytest
from audit_support import SYSTEM_CTX, append_events, checkpoint, new_project, table, verify
from tests.support.platform import SYSTEM

from labelvault.audit import merkle_root, parse_and_verify
from labelvault.audit.checkpointer import (
    accumulator_of,
    checkpoint_all,
    checkpoint_chain,
    project_chain_id,
    write_note_file,
)
from labelvault.audit.dbverify import verify_database
from labelvault.audit.record import audit_control, audit_project
from labelvault.audit.sealer import seal_project
from labelvault.audit.signing import load_signer, public_verifier_key
from labelvault.db.bootstrap import DatabaseTarget
from labelvault.db.context import ControlContext
from labelvault.platform import Platform


async def _rows(platform: Platform, project_id: uuid.UUID) -> list[tuple[int, bytes]]:
    async with platform.db.project_tx(project_id, SYSTEM_CTX) as conn:
        cur = await conn.execute(f"SELECT seq, body FROM {table(project_id)} ORDER BY seq")
        return [(int(s), bytes(b)) for s, b in await cur.fetchall()]


async def test_appends_in_the_callers_transaction(
    platform: Platform, db_target: DatabaseTarget
) -> None:
    pid = await new_project(platform)
    assert await append_events(platform, pid, 3) == [1, 2, 3]
    async with platform.db.control_tx(ControlContext.system_context()) as conn:
        pending = await audit_control(conn, SYSTEM, "test.control_append", resource_type="test")
    assert pending > 0  # chained by the sealer, not yet part of the chain
    rows = await _rows(platform, pid)
    assert [s for s, _ in rows] == [1, 2, 3]
    assert b'"action":"item.read"' in rows[0][1]
    key = await public_verifier_key(platform)
    report = await verify(db_target.owner_dsn, pid, key, check_bodies=True)
    assert report.ok, report.to_json()


async def test_rolled_back_action_leaves_no_event_and_no_gap(
    platform: Platform, db_target: DatabaseTarget
) -> None:
    pid = await new_project(platform)
    await append_events(platform, pid, 2)
    with pytest.raises(RuntimeError):
        async with platform.db.project_tx(pid, SYSTEM_CTX) as conn:
            assert await audit_project(conn, SYSTEM, "item.update", project_id=pid) > 0
            raise RuntimeError("the action failed")
    assert await append_events(platform, pid, 1) == [3]
    rows = await _rows(platform, pid)
    assert [s for s, _ in rows] == [1, 2, 3]
    assert all(b"item.update" not in body for _, body in rows)
    report = await verify(db_target.owner_dsn, pid, await public_verifier_key(platform))
    assert report.ok, report.to_json()


WRITES = [
    "UPDATE {t} SET ts_us = ts_us + 1",
    "DELETE FROM {t}",
    "TRUNCATE {t}",
    "INSERT INTO {t} (seq, ts_us, body, leaf, prev_hash, chain_hash{org}) "
    "VALUES (999999, 0, 'x', 'x', 'x', 'x'{orgval})",
]


@pytest.mark.parametrize("statement", WRITES)
async def test_runtime_and_project_roles_cannot_write_the_tables(
    platform: Platform, statement: str
) -> None:
    pid = await new_project(platform)
    await append_events(platform, pid, 1)
    async with platform.db.project_tx(pid, SYSTEM_CTX) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
            await conn.execute(statement.format(t=table(pid), org="", orgval=""))
    async with platform.db.control_tx(ControlContext.system_context()) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
            await conn.execute(
                statement.format(t="lv_control.audit_events", org=", org_id", orgval=", NULL")
            )
    for t in ("lv_control.audit_checkpoints",):
        async with platform.db.control_tx(ControlContext.system_context()) as conn:
            if statement.startswith("INSERT"):
                continue  # the platform inserts checkpoints (system context)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                await conn.execute(
                    statement.format(t=t, org="", orgval="").replace(
                        "ts_us = ts_us + 1", "size = size + 1"
                    )
                )


@pytest.mark.parametrize("statement", WRITES[:3])
async def test_even_the_superuser_hits_the_trigger(
    platform: Platform, db_target: DatabaseTarget, statement: str
) -> None:
    pid = await new_project(platform)
    await append_events(platform, pid, 2)
    await checkpoint(platform, pid)  # so that every table has a row for the row triggers
    from labelvault.audit.sealer import seal_control

    await seal_control(platform.db)
    with psycopg.connect(db_target.owner_dsn) as conn:
        assert conn.execute(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
        ).fetchone() == (True,)
        for t in (table(pid), "lv_control.audit_events", "lv_control.audit_checkpoints"):
            sql = statement.format(t=t)
            if "checkpoints" in t:
                sql = sql.replace("ts_us = ts_us + 1", "note = note")
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(sql)
            conn.rollback()


async def test_concurrent_writers_get_a_gapless_chain(
    platform: Platform, db_target: DatabaseTarget
) -> None:
    pid = await new_project(platform)

    async def writer(w: int) -> None:
        for i in range(50):
            async with platform.db.project_tx(pid, SYSTEM_CTX) as conn:
                await audit_project(
                    conn, SYSTEM, "item.read", resource_id=f"{w}-{i}", project_id=pid
                )

    done = asyncio.Event()

    async def sealer() -> None:  # several sealers race each other and the writers
        while not done.is_set():
            await seal_project(platform.db, pid)
            await asyncio.sleep(0.01)

    sealers = [asyncio.create_task(sealer()) for _ in range(3)]
    await asyncio.gather(*(writer(w) for w in range(16)))
    done.set()
    await asyncio.gather(*sealers)
    await seal_project(platform.db, pid)
    rows = await _rows(platform, pid)
    assert [s for s, _ in rows] == list(range(1, 801))
    assert len({body for _, body in rows}) == 800
    report = await verify(db_target.owner_dsn, pid, await public_verifier_key(platform))
    assert report.ok and report.chains[0].events_checked == 800, report.to_json()


async def test_checkpoints_are_signed_stored_written_and_incremental(
    platform: Platform, db_target: DatabaseTarget, tmp_path: Path
) -> None:
    pid = await new_project(platform)
    chain = project_chain_id(pid)
    signer = await load_signer(platform)
    key = signer.verifier_key()
    assert await public_verifier_key(platform) == key  # one key, created once
    assert await checkpoint_chain(platform, chain, signer) is None  # empty: nothing to sign
    await append_events(platform, pid, 5)
    first = await checkpoint_chain(platform, chain, signer)
    assert first is not None and first.size == 5
    assert await checkpoint_chain(platform, chain, signer) is None  # did not grow
    await append_events(platform, pid, 70)
    second = await checkpoint_chain(platform, chain, signer)
    assert second is not None and second.size == 75
    cp = parse_and_verify(second.note, [key])
    assert cp.origin == f"labelvault/{platform.settings.region}/{chain}"
    async with platform.db.project_tx(pid, SYSTEM_CTX) as conn:
        cur = await conn.execute(f"SELECT leaf FROM {table(pid)} ORDER BY seq")
        leaves = [bytes(r[0]) for r in await cur.fetchall()]
    assert cp.root == merkle_root(leaves)  # the incremental root is the full root
    assert accumulator_of(cp) is not None
    # the external directory: 0644 files, never overwritten
    path = write_note_file(tmp_path, chain, cp.size, second.note)
    assert path == tmp_path / chain / "75.note" and path.read_text() == second.note
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert write_note_file(tmp_path, chain, cp.size, second.note) == path
    with pytest.raises(FileExistsError):
        write_note_file(tmp_path, chain, cp.size, first.note)
    report = await verify(db_target.owner_dsn, pid, key, checkpoint_dir=tmp_path)
    assert report.ok and report.chains[0].anchored_size == 75, report.to_json()


async def test_checkpoint_all_and_verify_everything(
    platform: Platform, db_target: DatabaseTarget
) -> None:
    pid = await new_project(platform)
    await append_events(platform, pid, 4)
    results = await checkpoint_all(platform)
    chains = {r.chain_id for r in results}
    assert project_chain_id(pid) in chains
    key = await public_verifier_key(platform)
    report = await asyncio.to_thread(verify_database, db_target.owner_dsn, public_keys=[key])
    assert report.ok, "\n".join(f"{c} {p}" for c, p in report.all_problems())
    assert {"control", project_chain_id(pid)} <= {c.chain_id for c in report.chains}


async def test_signing_key_override(platform: Platform, tmp_path: Path) -> None:
    import base64

    from labelvault.audit.signing import SIGNING_CONTEXT

    seed = bytes(range(32))
    settings = platform.settings.model_copy(
        update={
            "audit_signing_key": __import__("pydantic").SecretStr(base64.b64encode(seed).decode())
        }
    )
    other = dataclasses.replace(platform, settings=settings)
    signer = await load_signer(other)
    assert signer.key_name.startswith(f"labelvault-{settings.region}-ext-")
    again = await load_signer(other)
    assert again.verifier_key() == signer.verifier_key()
    assert SIGNING_CONTEXT["purpose"] == "audit-signing"
