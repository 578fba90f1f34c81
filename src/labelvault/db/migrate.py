"""``labelvault migrate``: roles, the control plane (Alembic) and every project schema.

Runs with the owner/admin DSN, under a session advisory lock so that servers starting together
cannot race. Order: database and roles, control-plane revisions as ``lv_owner``, the provisioning
function compiled from the project steps, then every existing project brought to the current
project version through that same function.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from labelvault.db.deprovision import drop_function_sql
from labelvault.db.names import (
    CONTROL_SCHEMA,
    MIGRATION_LOCK_KEY,
    OWNER_ROLE,
    RUNTIME_ROLE,
)
from labelvault.db.project_schema import current_project_version, provisioning_function_sql
from labelvault.db.scram import scram_verifier
from labelvault.jobs.schema import install_job_schema

_ALEMBIC_DIR = Path(__file__).parent / "alembic"


@dataclass(frozen=True)
class MigrationReport:
    control_revision: str
    project_version: int
    projects_migrated: int


def _role_exists(conn: psycopg.Connection, role: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone() is not None


def bootstrap_roles(conn: psycopg.Connection, app_password: str) -> None:
    """Create or repair ``lv_owner`` and ``lv_app`` and the database-level grants."""
    row = conn.execute("SELECT current_database(), current_user").fetchone()
    assert row is not None
    dbname, admin = row
    db = sql.Identifier(dbname)
    owner, app = sql.Identifier(OWNER_ROLE), sql.Identifier(RUNTIME_ROLE)
    if not _role_exists(conn, OWNER_ROLE):
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN CREATEROLE NOINHERIT").format(owner))
    admin_is_super = conn.execute(
        "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    if not (admin_is_super and admin_is_super[0]):
        conn.execute(sql.SQL("GRANT {} TO {}").format(owner, sql.Identifier(admin)))
    verifier = sql.Literal(scram_verifier(app_password))
    if not _role_exists(conn, RUNTIME_ROLE):
        conn.execute(
            sql.SQL(
                "CREATE ROLE {} LOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS "
                "NOREPLICATION PASSWORD {}"
            ).format(app, verifier)
        )
    else:
        conn.execute(
            sql.SQL(
                "ALTER ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS "
                "NOREPLICATION PASSWORD {}"
            ).format(app, verifier)
        )
    conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db))
    conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(db, app))
    conn.execute(
        sql.SQL("GRANT CONNECT, CREATE ON DATABASE {} TO {} WITH GRANT OPTION").format(db, owner)
    )
    conn.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
    conn.execute(
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}").format(
            sql.Identifier(CONTROL_SCHEMA), owner
        )
    )
    conn.execute(
        sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(sql.Identifier(CONTROL_SCHEMA))
    )


def _run_alembic(owner_dsn: str) -> str:
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    engine = create_engine(
        "postgresql+psycopg://", creator=lambda: psycopg.connect(owner_dsn), poolclass=NullPool
    )
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(f"SET ROLE {OWNER_ROLE}")
            cfg = Config()
            cfg.set_main_option("script_location", str(_ALEMBIC_DIR))
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "head")
            revision = MigrationContext.configure(
                connection, opts={"version_table_schema": CONTROL_SCHEMA}
            ).get_current_revision()
    finally:
        engine.dispose()
    return revision or ""


def migrate(owner_dsn: str, app_password: str) -> MigrationReport:
    with psycopg.connect(owner_dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", [MIGRATION_LOCK_KEY])
        try:
            bootstrap_roles(conn, app_password)
            revision = _run_alembic(owner_dsn)
            with conn.transaction():
                conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(OWNER_ROLE)))
                conn.execute(provisioning_function_sql())
                conn.execute(drop_function_sql())
                project_ids = [
                    r[0]
                    for r in conn.execute(
                        f"SELECT id FROM {CONTROL_SCHEMA}.projects "
                        "WHERE status IN ('provisioning', 'active') ORDER BY created_at"
                    )
                ]
            for project_id in project_ids:
                with conn.transaction():
                    conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(OWNER_ROLE)))
                    conn.execute(
                        f"SELECT {CONTROL_SCHEMA}.provision_project(%s, NULL)", [project_id]
                    )
            install_job_schema(conn)  # procrastinate, in its own schema (labelvault.jobs)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", [MIGRATION_LOCK_KEY])
    return MigrationReport(revision, current_project_version(), len(project_ids))
