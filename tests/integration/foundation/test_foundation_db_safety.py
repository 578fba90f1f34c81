"""Start-up self-check of the runtime role, concurrent migrations, and pooled connections that
come back without tenant context. Real PostgreSQL, real roles."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest
from psycopg import AsyncConnection, sql
from tests.support.platform import make_org, make_project

from labelvault.db.bootstrap import DatabaseTarget
from labelvault.db.catalog import UnsafeRoleError, assert_safe_runtime_role
from labelvault.db.context import ControlContext, ProjectContext
from labelvault.db.migrate import migrate
from labelvault.db.names import MIGRATION_LOCK_KEY, OWNER_ROLE, RUNTIME_ROLE, project_schema
from labelvault.db.project_schema import current_project_version
from labelvault.platform import Platform

# -- start-up self-check ---------------------------------------------------------------------


async def test_self_check_refuses_the_superuser(db_target: DatabaseTarget) -> None:
    async with await AsyncConnection.connect(db_target.owner_dsn) as conn:
        cur = await conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        row = await cur.fetchone()
        assert row is not None
        with pytest.raises(UnsafeRoleError) as caught:
            await assert_safe_runtime_role(conn)
    message = str(caught.value)
    assert message.startswith("refusing to start: the runtime database role ")
    assert caught.value.code == "unsafe_database_role"
    if row[0]:
        for problem in ("is superuser", "can create roles or databases", "owns "):
            assert problem in message, message
    assert "\n" not in message


async def test_self_check_refuses_the_owner_role(db_target: DatabaseTarget) -> None:
    async with await AsyncConnection.connect(db_target.owner_dsn, autocommit=True) as conn:
        await conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(OWNER_ROLE)))
        with pytest.raises(UnsafeRoleError) as caught:
            await assert_safe_runtime_role(conn)
    message = str(caught.value)
    assert "can create roles or databases" in message
    assert "owns schema lv_control" in message


async def test_self_check_passes_on_the_runtime_pool(platform: Platform) -> None:
    async with platform.db.control_pool.connection() as conn:
        await assert_safe_runtime_role(conn)
        cur = await conn.execute("SELECT current_user")
        assert await cur.fetchone() == (RUNTIME_ROLE,)


# -- migrations --------------------------------------------------------------------------------


def _project_versions(owner_dsn: str) -> dict[str, int]:
    with psycopg.connect(owner_dsn, autocommit=True) as conn:
        schemas = [
            r[0]
            for r in conn.execute(
                r"SELECT nspname FROM pg_namespace WHERE nspname LIKE 'p\_%' ORDER BY 1"
            )
        ]
        versions = {}
        for schema in schemas:
            row = conn.execute(
                sql.SQL("SELECT version FROM {}.lv_schema_meta").format(sql.Identifier(schema))
            ).fetchone()
            assert row is not None, schema
            versions[schema] = row[0]
        return versions


def _waiting_on_migration_lock(owner_dsn: str) -> int:
    with psycopg.connect(owner_dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND ((classid::bigint << 32) | objid::bigint) = %s",
            [MIGRATION_LOCK_KEY],
        ).fetchone()
        return int(row[0]) if row else 0


async def _seed_item(platform: Platform, project_id: uuid.UUID) -> None:
    async with platform.db.project_tx(project_id, ProjectContext(uuid.uuid4(), "system")) as conn:
        await conn.execute(
            "INSERT INTO items (id, kind, content, dedup_key, created_by) VALUES "
            "(gen_random_uuid(), 'text', '\\x00', gen_random_uuid()::text::bytea, "
            "gen_random_uuid())"
        )


async def _item_count(platform: Platform, project_id: uuid.UUID) -> int:
    async with platform.db.project_tx(project_id, ProjectContext(uuid.uuid4(), "system")) as conn:
        cur = await conn.execute("SELECT count(*) FROM items")
        row = await cur.fetchone()
    return int(row[0]) if row else -1


async def test_concurrent_migrations_serialise_and_rerun_is_a_no_op(
    platform: Platform, db_target: DatabaseTarget
) -> None:
    org = await make_org(platform)
    project = await make_project(platform, org.id)
    await _seed_item(platform, project.id)
    dsn, password = db_target.owner_dsn, db_target.app_password

    # hold the migration lock, start two migrations: both must queue behind it
    async with await AsyncConnection.connect(dsn, autocommit=True) as holder:
        await holder.execute("SELECT pg_advisory_lock(%s)", [MIGRATION_LOCK_KEY])
        runs = asyncio.gather(
            asyncio.to_thread(migrate, dsn, password), asyncio.to_thread(migrate, dsn, password)
        )
        try:
            for _ in range(200):
                if await asyncio.to_thread(_waiting_on_migration_lock, dsn) == 2:
                    break
                await asyncio.sleep(0.05)
            else:
                pytest.fail("the two migrations did not wait for the advisory lock")
        finally:
            await holder.execute("SELECT pg_advisory_unlock(%s)", [MIGRATION_LOCK_KEY])
        first, second = await asyncio.wait_for(runs, timeout=120)

    assert first == second
    assert first.project_version == current_project_version()
    versions = await asyncio.to_thread(_project_versions, dsn)
    assert project_schema(project.id) in versions
    assert set(versions.values()) == {current_project_version()}
    assert first.projects_migrated >= 1

    again = await asyncio.to_thread(migrate, dsn, password)
    assert again == first
    assert await asyncio.to_thread(_project_versions, dsn) == versions
    assert await _item_count(platform, project.id) == 1
    # the runtime pool still authenticates after migrate re-set lv_app's password
    async with platform.db.control_tx(ControlContext.system_context()) as conn:
        cur = await conn.execute(
            "SELECT name FROM lv_control.organizations WHERE id = %s", [org.id]
        )
        assert await cur.fetchone() == (org.name,)


# -- no tenant context survives on a pooled connection ----------------------------------------

_CONTEXT_SQL = (
    "SELECT pg_backend_pid(), current_user, NULLIF(current_setting('lv.user_id', true), ''), "
    "NULLIF(current_setting('lv.org_id', true), ''), NULLIF(current_setting('lv.system', true), '')"
)


async def _context_of_pooled_connections(platform: Platform, wanted_pid: int) -> list[tuple]:  # type: ignore[type-arg]
    """Check out idle control connections (holding them) until the one with ``wanted_pid``."""
    pool = platform.db.control_pool
    seen: list[tuple] = []  # type: ignore[type-arg]
    conns = []
    try:
        for _ in range(pool.max_size):
            conn = await pool.getconn()
            conns.append(conn)
            cur = await conn.execute(_CONTEXT_SQL)
            row = await cur.fetchone()
            await conn.rollback()
            assert row is not None
            seen.append(tuple(row))
            if row[0] == wanted_pid:
                break
    finally:
        for conn in conns:
            await pool.putconn(conn)
    assert any(r[0] == wanted_pid for r in seen), "the connection left the pool"
    return seen


async def test_control_context_does_not_outlive_the_transaction(platform: Platform) -> None:
    org = await make_org(platform)
    user_id = uuid.uuid4()
    ctx = ControlContext(user_id, org.id, True)
    async with platform.db.control_tx(ctx) as conn:
        cur = await conn.execute(_CONTEXT_SQL)
        inside = await cur.fetchone()
    assert inside is not None
    assert inside[2:] == (str(user_id), str(org.id), "on")
    for row in await _context_of_pooled_connections(platform, inside[0]):
        assert row[1:] == (RUNTIME_ROLE, None, None, None), row


async def test_control_context_is_gone_after_a_failed_transaction(platform: Platform) -> None:
    org = await make_org(platform)
    ctx = ControlContext(uuid.uuid4(), org.id, False)
    pid = None
    with pytest.raises(psycopg.errors.DivisionByZero):
        async with platform.db.control_tx(ctx) as conn:
            cur = await conn.execute("SELECT pg_backend_pid()")
            row = await cur.fetchone()
            assert row is not None
            pid = row[0]
            await conn.execute("SELECT 1 / 0")
    assert pid is not None
    for row in await _context_of_pooled_connections(platform, pid):
        assert row[1:] == (RUNTIME_ROLE, None, None, None), row


async def test_project_context_is_gone_after_a_failed_transaction(platform: Platform) -> None:
    org = await make_org(platform)
    project = await make_project(platform, org.id)
    with pytest.raises(RuntimeError, match="boom"):
        async with platform.db.project_tx(project.id, ProjectContext(uuid.uuid4(), "manager")):
            raise RuntimeError("boom")
    pool = await platform.db.projects.get(project.id)
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT NULLIF(current_setting('lv.role', true), ''), "
            "NULLIF(current_setting('lv.user_id', true), '')"
        )
        assert await cur.fetchone() == (None, None)
        await conn.rollback()
