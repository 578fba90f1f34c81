"""Attacks that must fail, run as real SQL on the real connections.

Project A's connection (authenticated as A's own role) tries to reach project B in every way we
can think of; the runtime role tries to read project schemas directly; contexts are forged or
missing. Each asserts the specific PostgreSQL error.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
import pytest
from psycopg import AsyncConnection, errors
from tests.support.platform import make_org, make_project

from labelvault.db.context import ControlContext, ProjectContext
from labelvault.db.names import project_role, project_schema
from labelvault.platform import Platform
from labelvault.tenancy.models import Project


@pytest.fixture
async def a_and_b(platform: Platform) -> tuple[Project, Project]:
    """Two projects of two different organizations."""
    org_a, org_b = await make_org(platform), await make_org(platform)
    return await make_project(platform, org_a.id), await make_project(platform, org_b.id)


@asynccontextmanager
async def project_conn(
    platform: Platform, project: Project, role: str = "system"
) -> AsyncIterator[AsyncConnection]:
    async with platform.db.project_tx(project.id, ProjectContext(uuid.uuid4(), role)) as conn:
        yield conn


async def _seed_item(platform: Platform, project: Project) -> None:
    async with project_conn(platform, project) as conn:
        await conn.execute(
            "INSERT INTO items (id, kind, content, dedup_key, created_by) VALUES "
            "(gen_random_uuid(), 'text', '\\x00', gen_random_uuid()::text::bytea, "
            "gen_random_uuid())"
        )


SQL_ON_B = [
    "SELECT * FROM {b}.items",
    "SELECT count(*) FROM {b}.tasks",
    "INSERT INTO {b}.items (id, kind, content, dedup_key, created_by) VALUES "
    "(gen_random_uuid(), 'text', '\\x00', '\\x01', gen_random_uuid())",
    "UPDATE {b}.items SET is_gold = true",
    "DELETE FROM {b}.tasks",
    "SELECT * FROM {b}.audit_events",
    "SELECT {b}.audit_append('\\x7b7d')",
]


@pytest.mark.parametrize("statement", SQL_ON_B)
async def test_project_a_cannot_touch_project_b(
    platform: Platform,
    a_and_b: tuple,  # type: ignore[type-arg]
    statement: str,
) -> None:
    a, b = a_and_b
    await _seed_item(platform, b)
    with pytest.raises(errors.InsufficientPrivilege, match="permission denied for schema"):
        async with project_conn(platform, a) as conn:
            await conn.execute(statement.format(b=project_schema(b.id)))


async def test_project_a_cannot_set_role_to_b(platform: Platform, a_and_b: tuple) -> None:  # type: ignore[type-arg]
    a, b = a_and_b
    for attempt in (
        f"SET ROLE {project_role(b.id)}",
        f"SET LOCAL ROLE {project_role(b.id)}",
        f"SELECT set_config('role', '{project_role(b.id)}', true)",
        "SET ROLE lv_owner",
        "SET ROLE lv_app",
        "SET SESSION AUTHORIZATION lv_owner",
    ):
        with pytest.raises(
            errors.InsufficientPrivilege,
            match=r"permission denied to set (role|session authorization)",
        ):
            async with project_conn(platform, a) as conn:
                await conn.execute(attempt)


async def test_project_a_cannot_read_the_control_plane(platform: Platform, a_and_b: tuple) -> None:  # type: ignore[type-arg]
    a, _ = a_and_b
    for table in ("project_credentials", "data_keys", "users", "sessions", "memberships"):
        with pytest.raises(errors.InsufficientPrivilege, match="permission denied for schema"):
            async with project_conn(platform, a) as conn:
                await conn.execute(f"SELECT * FROM lv_control.{table}")


async def test_set_config_tricks_do_not_cross_projects(platform: Platform, a_and_b: tuple) -> None:  # type: ignore[type-arg]
    a, b = a_and_b
    await _seed_item(platform, b)
    # pointing the search path at B only makes B's tables unnamed, not readable
    with pytest.raises(errors.UndefinedTable):
        async with project_conn(platform, a) as conn:
            await conn.execute("SELECT set_config('search_path', %s, true)", [project_schema(b.id)])
            await conn.execute("SELECT * FROM items")
    # forging the platform context inside A gives A's rows only: B stays out of reach
    with pytest.raises(errors.InsufficientPrivilege):
        async with project_conn(platform, a, role="annotator") as conn:
            await conn.execute("SELECT set_config('lv.role', 'system', true)")
            await conn.execute(f"SELECT * FROM {project_schema(b.id)}.items")


async def test_runtime_role_cannot_read_project_schemas(platform: Platform, a_and_b: tuple) -> None:  # type: ignore[type-arg]
    a, _ = a_and_b
    await _seed_item(platform, a)
    for statement in (
        "SELECT * FROM {s}.items",
        "SELECT * FROM {s}.tasks",
        "SELECT * FROM {s}.audit_events",
    ):
        with pytest.raises(errors.InsufficientPrivilege, match="permission denied for schema"):
            async with platform.db.control_tx(ControlContext.system_context()) as conn:
                await conn.execute(statement.format(s=project_schema(a.id)))


async def test_project_rls_fails_closed_without_context(platform: Platform, a_and_b: tuple) -> None:  # type: ignore[type-arg]
    a, _ = a_and_b
    await _seed_item(platform, a)
    pool = await platform.db.projects.get(a.id)
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM items")
        assert await cur.fetchone() == (0,)
        # once a setting has been used, current_setting returns '' rather than NULL
        await conn.execute("SELECT set_config('lv.role', '', false)")
        cur = await conn.execute("SELECT count(*) FROM items")
        assert await cur.fetchone() == (0,)
        with pytest.raises(
            errors.InsufficientPrivilege, match="violates row-level security policy"
        ):
            await conn.execute(
                "INSERT INTO items (id, kind, content, dedup_key, created_by) VALUES "
                "(gen_random_uuid(), 'text', '\\x00', '\\x02', gen_random_uuid())"
            )
        await conn.rollback()


async def test_control_plane_rls_fails_closed_without_context(
    platform: Platform, a_and_b: tuple
) -> None:  # type: ignore[type-arg]
    async with platform.db.control_pool.connection() as conn:
        for table in (
            "organizations",
            "users",
            "projects",
            "memberships",
            "project_credentials",
            "data_keys",
            "sessions",
            "api_tokens",
        ):
            cur = await conn.execute(f"SELECT count(*) FROM lv_control.{table}")
            assert await cur.fetchone() == (0,), table
        with pytest.raises(errors.InsufficientPrivilege, match="row-level security"):
            await conn.execute(
                "INSERT INTO lv_control.organizations (id, name, region) VALUES "
                "(gen_random_uuid(), 'sneaky', 'local')"
            )
        await conn.rollback()


async def test_org_context_hides_other_organizations(platform: Platform, a_and_b: tuple) -> None:  # type: ignore[type-arg]
    a, b = a_and_b
    ctx = ControlContext(None, a.org_id, False)
    async with platform.db.control_tx(ctx) as conn:
        cur = await conn.execute("SELECT id FROM lv_control.projects")
        visible = {r[0] for r in await cur.fetchall()}
        assert a.id in visible and b.id not in visible
        cur = await conn.execute("SELECT count(*) FROM lv_control.project_credentials")
        assert await cur.fetchone() == (0,)  # credentials: the platform's own context only
        # moving a row into another tenant is refused by WITH CHECK
        with pytest.raises(errors.InsufficientPrivilege, match="row-level security"):
            await conn.execute(
                "UPDATE lv_control.projects SET org_id = %s WHERE id = %s", [b.org_id, a.id]
            )


async def test_context_does_not_outlive_the_transaction(platform: Platform, a_and_b: tuple) -> None:  # type: ignore[type-arg]
    a, _ = a_and_b
    async with project_conn(platform, a, role="manager"):
        pass
    pool = await platform.db.projects.get(a.id)
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT NULLIF(current_setting('lv.role', true), ''), "
            "NULLIF(current_setting('lv.user_id', true), '')"
        )
        assert await cur.fetchone() == (None, None)
        await conn.rollback()


async def test_provisioning_refuses_anything_but_a_verifier(
    platform: Platform, a_and_b: tuple
) -> None:  # type: ignore[type-arg]
    a, _ = a_and_b
    for bad in (
        "plaintext-password",
        "x' LOGIN SUPERUSER --",
        "SCRAM-SHA-256$4096:abc$def:ghi'; DROP SCHEMA lv_control CASCADE; --",
    ):
        with pytest.raises(errors.InvalidParameterValue, match="SCRAM-SHA-256 verifier"):
            async with platform.db.control_tx(ControlContext.system_context()) as conn:
                await conn.execute("SELECT lv_control.provision_project(%s, %s)", [a.id, bad])
    with pytest.raises(errors.UndefinedObject, match="no such project"):
        async with platform.db.control_tx(ControlContext.system_context()) as conn:
            await conn.execute("SELECT lv_control.provision_project(%s, NULL)", [uuid.uuid4()])


def test_project_role_credential_is_its_own(db_target: object, a_and_b: tuple) -> None:  # type: ignore[type-arg]
    """Each project role needs its own password: no trust, no shared credential."""
    from labelvault.db.dsn import derive_dsn

    a, _ = a_and_b
    dsn = derive_dsn(
        db_target.owner_dsn,
        user=project_role(a.id),  # type: ignore[attr-defined]
        password="not-the-password",
    )
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(dsn, connect_timeout=5).close()
