"""Installing procrastinate's tables and functions in their own schema, owned by ``lv_owner``.

``labelvault migrate`` calls :func:`install_job_schema` with the owner/admin connection. The
schema ``procrastinate`` is created by ``lv_owner`` (so the runtime role owns nothing), the
procrastinate SQL runs with ``search_path`` set to it, every function in it gets a pinned
``search_path`` (nobody can shadow its tables from another schema), and the runtime role
``lv_app`` gets exactly what a worker and a deferring server need:

* ``USAGE`` on the schema — to name its objects; never ``CREATE``.
* ``SELECT, INSERT, UPDATE, DELETE`` on its four tables — deferring inserts jobs (and, through
  the invoker's triggers, events), fetching and finishing update them, the worker registers and
  unregisters itself and updates its heartbeat, and old finished jobs are deleted.
  No ``TRUNCATE``, ``REFERENCES`` or ``TRIGGER``.
* ``USAGE`` on its sequences — the ``bigserial``/identity ids of new rows.
* ``EXECUTE`` on its functions (revoked from ``PUBLIC``) — procrastinate calls them for every
  defer, fetch, finish, retry and heartbeat; they run as the invoker (``lv_app``), so the table
  grants above still apply.

Upgrades: the schema's comment records the procrastinate schema level (the newest migration
file shipped with the installed procrastinate). A newer procrastinate's migration files are
applied, in order, by the next ``labelvault migrate`` (stop the old workers first).
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import psycopg
from psycopg import sql

from labelvault.db.names import OWNER_ROLE, RUNTIME_ROLE

JOB_SCHEMA = "procrastinate"
_LEVEL = re.compile(r"^(\d\d\.\d\d\.\d\d)_(\d\d)_.+\.sql$")
_COMMENT = re.compile(r"^procrastinate schema level (\d\d\.\d\d\.\d\d)$")


def _migrations() -> list[tuple[str, Path]]:
    from procrastinate.schema import SchemaManager

    out = []
    for path in sorted(Path(SchemaManager.get_migrations_path()).glob("*.sql")):
        match = _LEVEL.match(path.name)
        if match:
            out.append((match.group(1), path))
    return out


def schema_level() -> str:
    """The procrastinate schema level of the installed package (its newest migration)."""
    return max(level for level, _ in _migrations())


def _installed_level(conn: psycopg.Connection) -> str | None:
    row = conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL, obj_description(n.oid, 'pg_namespace') "
        "FROM pg_namespace n WHERE n.nspname = %s",
        [f"{JOB_SCHEMA}.procrastinate_jobs", JOB_SCHEMA],
    ).fetchone()
    if row is None or not row[0]:
        return None
    match = _COMMENT.match(row[1] or "")
    # installed by hand, without our comment: take it as current rather than replay history
    return match.group(1) if match else schema_level()


_PIN_SEARCH_PATH = """
DO $pin$
DECLARE f regprocedure;
BEGIN
  FOR f IN SELECT p.oid::regprocedure FROM pg_proc p
            WHERE p.pronamespace = 'procrastinate'::regnamespace LOOP
    EXECUTE format('ALTER FUNCTION %s SET search_path = procrastinate, pg_temp', f);
  END LOOP;
END
$pin$;
"""


def install_job_schema(conn: psycopg.Connection) -> str:
    """Install or upgrade the job schema and (re)apply the runtime role's grants; returns the
    schema level. ``conn`` is the owner/admin connection in autocommit mode."""
    schema, owner, app = (
        sql.Identifier(JOB_SCHEMA),
        sql.Identifier(OWNER_ROLE),
        sql.Identifier(RUNTIME_ROLE),
    )
    target = schema_level()
    with conn.transaction():
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(owner))
        conn.execute(
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}").format(schema, owner)
        )
        conn.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(schema))
        conn.execute(sql.SQL("SET LOCAL search_path = {}").format(schema))
        installed = _installed_level(conn)
        if installed is None:
            text = (resources.files("procrastinate.sql") / "schema.sql").read_text("utf-8")
            conn.execute(text.encode())
        elif installed < target:
            for level, path in _migrations():
                if level > installed:
                    conn.execute(path.read_text("utf-8").encode())
        conn.execute(_PIN_SEARCH_PATH.encode())
        conn.execute(
            sql.SQL("COMMENT ON SCHEMA {} IS {}").format(
                schema, sql.Literal(f"procrastinate schema level {max(target, installed or '')}")
            )
        )
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema, app))
        conn.execute(
            sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {} TO {}").format(
                schema, app
            )
        )
        conn.execute(sql.SQL("GRANT USAGE ON ALL SEQUENCES IN SCHEMA {} TO {}").format(schema, app))
        conn.execute(sql.SQL("REVOKE ALL ON ALL FUNCTIONS IN SCHEMA {} FROM PUBLIC").format(schema))
        conn.execute(
            sql.SQL("GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {} TO {}").format(schema, app)
        )
    return target
