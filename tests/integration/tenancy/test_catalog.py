"""Catalog invariants read from pg_catalog after migrations and after creating projects."""

from __future__ import annotations

import psycopg
import pytest
from tests.support.platform import make_org, make_project

from labelvault.db.bootstrap import DatabaseTarget
from labelvault.db.catalog import role_problems
from labelvault.db.names import (
    CONTROL_SCHEMA,
    NON_TENANT_TABLES,
    OWNER_ROLE,
    RUNTIME_ROLE,
    project_role,
    project_schema,
)
from labelvault.platform import Platform


@pytest.fixture
async def two_projects(platform: Platform) -> tuple[object, object]:
    org = await make_org(platform)
    return await make_project(platform, org.id), await make_project(platform, org.id)


def owner_conn(db_target: DatabaseTarget) -> psycopg.Connection:
    return psycopg.connect(db_target.owner_dsn, autocommit=True)


async def test_runtime_role_is_powerless(platform: Platform, two_projects: object) -> None:
    async with platform.db.control_pool.connection() as conn:
        assert await role_problems(conn) == []
        cur = await conn.execute(
            "SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb FROM pg_roles "
            "WHERE rolname = current_user"
        )
        assert await cur.fetchone() == (False, False, False, False)
        cur = await conn.execute("SELECT current_user")
        assert (await cur.fetchone()) == (RUNTIME_ROLE,)


def test_runtime_role_owns_nothing_and_creates_nothing(
    db_target: DatabaseTarget, two_projects: object
) -> None:
    with owner_conn(db_target) as conn:
        owned = conn.execute(
            "SELECT count(*) FROM pg_class WHERE relowner = %s::regrole", [RUNTIME_ROLE]
        ).fetchone()
        assert owned == (0,)
        owned = conn.execute(
            "SELECT count(*) FROM pg_proc WHERE proowner = %s::regrole", [RUNTIME_ROLE]
        ).fetchone()
        assert owned == (0,)
        creatable = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE has_schema_privilege(%s, oid, 'CREATE')",
            [RUNTIME_ROLE],
        ).fetchall()
        assert creatable == []
        db_privs = conn.execute(
            "SELECT has_database_privilege(%s, current_database(), 'CREATE'), "
            "has_database_privilege(%s, current_database(), 'TEMP')",
            [RUNTIME_ROLE, RUNTIME_ROLE],
        ).fetchone()
        assert db_privs == (False, False)
        member = conn.execute(
            "SELECT pg_has_role(%s, %s, 'MEMBER')", [RUNTIME_ROLE, OWNER_ROLE]
        ).fetchone()
        assert member == (False,)


def _tenant_tables(conn: psycopg.Connection) -> list[tuple[str, str, bool, bool]]:
    return conn.execute(
        "SELECT n.nspname, c.relname, c.relrowsecurity, c.relforcerowsecurity FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') AND "
        "(n.nspname = %s OR n.nspname LIKE 'p\\_%%')",
        [CONTROL_SCHEMA],
    ).fetchall()


def test_every_tenant_table_has_rls_enabled_and_forced(
    db_target: DatabaseTarget, two_projects: object
) -> None:
    with owner_conn(db_target) as conn:
        tables = _tenant_tables(conn)
    assert len(tables) > 10
    unprotected = [
        f"{s}.{t}"
        for s, t, rls, force in tables
        if t not in NON_TENANT_TABLES and not (rls and force)
    ]
    assert unprotected == []


def test_every_policy_checks_reads_and_writes(
    db_target: DatabaseTarget, two_projects: object
) -> None:
    with owner_conn(db_target) as conn:
        policies = conn.execute(
            "SELECT n.nspname, c.relname, p.polname, p.polcmd, p.polqual IS NOT NULL, "
            "p.polwithcheck IS NOT NULL FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace"
        ).fetchall()
    assert policies
    wrong = []
    for schema, table, name, cmd, has_using, has_check in policies:
        needs_using = cmd in ("*", "r", "w", "d")
        needs_check = cmd in ("*", "w", "a")
        if (needs_using and not has_using) or (needs_check and not has_check):
            wrong.append(f"{schema}.{table}:{name}")
    assert wrong == []


def test_every_view_is_security_invoker(db_target: DatabaseTarget) -> None:
    with owner_conn(db_target) as conn:
        definer_views = conn.execute(
            "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE c.relkind = 'v' AND (n.nspname = %s OR "
            "n.nspname LIKE 'p\\_%%') AND NOT coalesce(c.reloptions @> "
            "'{security_invoker=true}', false)",
            [CONTROL_SCHEMA],
        ).fetchall()
    assert definer_views == []


def test_project_roles_reach_their_own_schema_only(
    db_target: DatabaseTarget, two_projects: tuple
) -> None:  # type: ignore[type-arg]
    a, b = two_projects
    with owner_conn(db_target) as conn:
        for project, other in ((a, b), (b, a)):
            role = project_role(project.id)
            row = conn.execute(
                "SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb, rolcanlogin "
                "FROM pg_roles WHERE rolname = %s",
                [role],
            ).fetchone()
            assert row == (False, False, False, False, True)
            memberships = conn.execute(
                "SELECT count(*) FROM pg_auth_members WHERE member = %s::regrole", [role]
            ).fetchone()
            assert memberships == (0,)
            usable = {
                r[0]
                for r in conn.execute(
                    "SELECT nspname FROM pg_namespace WHERE has_schema_privilege(%s, oid, 'USAGE') "
                    "AND nspname NOT IN ('pg_catalog', 'information_schema') "
                    "AND nspname NOT LIKE 'pg\\_%%'",
                    [role],
                ).fetchall()
            }
            assert usable == {project_schema(project.id)}
            assert conn.execute(
                "SELECT has_schema_privilege(%s, %s, 'USAGE')", [role, project_schema(other.id)]
            ).fetchone() == (False,)
            creatable = conn.execute(
                "SELECT count(*) FROM pg_namespace WHERE has_schema_privilege(%s, oid, 'CREATE')",
                [role],
            ).fetchone()
            assert creatable == (0,)
            owned = conn.execute(
                "SELECT count(*) FROM pg_class WHERE relowner = %s::regrole", [role]
            ).fetchone()
            assert owned == (0,)
            owner = conn.execute(
                "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = %s",
                [project_schema(project.id)],
            ).fetchone()
            assert owner == (OWNER_ROLE,)
