"""Start-up self-check of the runtime role, read from ``pg_catalog`` (DESIGN invariant 1).

The server refuses to run if the role it connects as could bypass row-level security, owns any
object (an owner can disable RLS on its tables) or can create objects anywhere.
"""

from __future__ import annotations

from psycopg import AsyncConnection

from labelvault.db.names import OWNER_ROLE
from labelvault.kernel.errors import LabelVaultError


class UnsafeRoleError(LabelVaultError):
    code = "unsafe_database_role"


ROLE_PROBLEMS_SQL = """
SELECT problem FROM (
  SELECT 'is superuser' AS problem FROM pg_roles WHERE rolname = current_user AND rolsuper
  UNION ALL
  SELECT 'has BYPASSRLS' FROM pg_roles WHERE rolname = current_user AND rolbypassrls
  UNION ALL
  SELECT 'can create roles or databases' FROM pg_roles
    WHERE rolname = current_user AND (rolcreaterole OR rolcreatedb)
  UNION ALL
  SELECT 'owns ' || count(*) || ' relations' FROM pg_class
    WHERE relowner = (SELECT oid FROM pg_roles WHERE rolname = current_user) HAVING count(*) > 0
  UNION ALL
  SELECT 'owns ' || count(*) || ' functions' FROM pg_proc
    WHERE proowner = (SELECT oid FROM pg_roles WHERE rolname = current_user) HAVING count(*) > 0
  UNION ALL
  SELECT 'owns schema ' || nspname FROM pg_namespace
    WHERE nspowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)
  UNION ALL
  SELECT 'may CREATE in schema ' || nspname FROM pg_namespace
    WHERE has_schema_privilege(current_user, oid, 'CREATE')
  UNION ALL
  SELECT 'may CREATE or TEMP in database' WHERE
    has_database_privilege(current_user, current_database(), 'CREATE')
    OR has_database_privilege(current_user, current_database(), 'TEMP')
  UNION ALL
  SELECT 'is a member of ' || %s WHERE pg_has_role(current_user, %s, 'MEMBER')
) p
"""


async def role_problems(conn: AsyncConnection) -> list[str]:
    cur = await conn.execute(ROLE_PROBLEMS_SQL, [OWNER_ROLE, OWNER_ROLE])
    return [row[0] for row in await cur.fetchall()]


async def assert_safe_runtime_role(conn: AsyncConnection) -> None:
    problems = await role_problems(conn)
    await conn.rollback()
    if problems:
        raise UnsafeRoleError("refusing to start: the runtime database role " + "; ".join(problems))
