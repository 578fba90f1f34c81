"""The few read-only lookups the page shells need that no API route returns as such: the
caller's own projects and roles, a project's name, and (for an assigning manager) the
project's annotators. Run in the caller's own control-plane context (row-level security)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from psycopg.rows import dict_row

from labelvault.db.context import ControlContext
from labelvault.db.runtime import RuntimeDatabase
from labelvault.kernel.actor import Actor


@dataclass(frozen=True)
class MyProject:
    id: uuid.UUID
    name: str
    role: str | None  # None: reachable as an organization administrator only


async def my_projects(db: RuntimeDatabase, actor: Actor) -> list[MyProject]:
    async with db.control_tx(ControlContext.for_actor(actor)) as conn:
        cur = await conn.cursor(row_factory=dict_row).execute(
            "SELECT p.id, p.name, m.role FROM lv_control.projects p "
            "LEFT JOIN lv_control.memberships m ON m.project_id = p.id AND m.user_id = %s "
            "WHERE p.status = 'active' AND (m.user_id IS NOT NULL OR "
            "(%s AND p.org_id = %s)) ORDER BY lower(p.name) LIMIT 500",
            [actor.user_id, actor.is_org_admin, actor.org_id],
        )
        rows = await cur.fetchall()
    return [MyProject(r["id"], r["name"], r["role"]) for r in rows]


async def project_name(db: RuntimeDatabase, actor: Actor, project_id: uuid.UUID) -> str:
    async with db.control_tx(ControlContext.for_actor(actor)) as conn:
        cur = await conn.execute("SELECT name FROM lv_control.projects WHERE id = %s", [project_id])
        row = await cur.fetchone()
    return str(row[0]) if row else ""


async def viewer_email(db: RuntimeDatabase, actor: Actor) -> str:
    if actor.user_id is None:
        return actor.label or "system"
    async with db.control_tx(ControlContext.for_actor(actor)) as conn:
        cur = await conn.execute(
            "SELECT email FROM lv_control.users WHERE id = %s", [actor.user_id]
        )
        row = await cur.fetchone()
    return str(row[0]) if row else str(actor.user_id)


async def project_people(
    db: RuntimeDatabase, actor: Actor, project_id: uuid.UUID, role: str
) -> list[dict[str, Any]]:
    """Members of one role (id and email): whom a manager can assign work to."""
    async with db.control_tx(ControlContext.for_actor(actor)) as conn:
        cur = await conn.cursor(row_factory=dict_row).execute(
            "SELECT u.id, u.email FROM lv_control.memberships m "
            "JOIN lv_control.users u ON u.id = m.user_id "
            "WHERE m.project_id = %s AND m.role = %s AND u.status = 'active' "
            "ORDER BY lower(u.email)",
            [project_id, role],
        )
        return list(await cur.fetchall())
