"""Project memberships: who holds which role in which project; read on every request."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
from psycopg.rows import dict_row

from labelvault.access import Role
from labelvault.audit.record import audit_control
from labelvault.db.context import PROJECT_ROLES, SET_CONTROL_CONTEXT, ControlContext
from labelvault.db.runtime import RuntimeDatabase
from labelvault.identity.models import Membership
from labelvault.identity.tokens import token_allows
from labelvault.kernel.actor import Actor, ActorKind
from labelvault.kernel.errors import InvalidInputError, NotFoundError, PermissionDeniedError


def _membership(row: dict[str, Any]) -> Membership:
    return Membership(
        row["project_id"], row["user_id"], row["org_id"], row["role"], row["created_at"]
    )


async def _project_org(conn: psycopg.AsyncConnection[Any], project_id: uuid.UUID) -> uuid.UUID:
    cur = await conn.execute(
        "SELECT org_id FROM lv_control.projects WHERE id = %s AND status = 'active'", [project_id]
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFoundError("project not found")
    org_id: uuid.UUID = row[0]
    return org_id


def _require_member_admin(actor: Actor, org_id: uuid.UUID) -> None:
    if actor.is_system_admin or actor.is_system:
        return
    if actor.org_id != org_id:
        raise NotFoundError("project not found")
    if not actor.is_org_admin:
        raise PermissionDeniedError("only organization administrators manage memberships")


async def set_membership(
    db: RuntimeDatabase,
    actor: Actor,
    *,
    project_id: uuid.UUID,
    user_id: uuid.UUID,
    role: str,
) -> Membership:
    if role not in PROJECT_ROLES:
        raise InvalidInputError(
            f"role must be one of {', '.join(sorted(PROJECT_ROLES))}", field="role"
        )
    async with db.control_tx(ControlContext.for_actor(actor)) as conn:
        org_id = await _project_org(conn, project_id)
        _require_member_admin(actor, org_id)
        try:
            async with conn.transaction():
                cur = await conn.cursor(row_factory=dict_row).execute(
                    "INSERT INTO lv_control.memberships (org_id, project_id, user_id, role, "
                    "created_by) VALUES (%s, %s, %s, %s, %s) ON CONFLICT (project_id, user_id) "
                    "DO UPDATE SET role = excluded.role RETURNING *",
                    [org_id, project_id, user_id, role, actor.user_id],
                )
                row = await cur.fetchone()
        except psycopg.errors.ForeignKeyViolation:
            # the user does not exist, or belongs to another organization
            raise NotFoundError("user not found") from None
        assert row is not None
        await audit_control(
            conn,
            actor,
            "member.set",
            resource_type="membership",
            resource_id=user_id,
            project_id=project_id,
            org_id=org_id,
            details={"role": role},
        )
    return _membership(row)


async def remove_membership(
    db: RuntimeDatabase,
    actor: Actor,
    *,
    project_id: uuid.UUID,
    user_id: uuid.UUID,
) -> None:
    async with db.control_tx(ControlContext.for_actor(actor)) as conn:
        org_id = await _project_org(conn, project_id)
        _require_member_admin(actor, org_id)
        cur = await conn.execute(
            "DELETE FROM lv_control.memberships WHERE project_id = %s AND user_id = %s",
            [project_id, user_id],
        )
        if cur.rowcount == 0:
            raise NotFoundError("membership not found")
        await audit_control(
            conn,
            actor,
            "member.remove",
            resource_type="membership",
            resource_id=user_id,
            project_id=project_id,
            org_id=org_id,
        )


async def list_memberships(
    db: RuntimeDatabase, actor: Actor, *, project_id: uuid.UUID
) -> list[Membership]:
    async with db.control_tx(ControlContext.for_actor(actor)) as conn:
        org_id = await _project_org(conn, project_id)
        _require_member_admin(actor, org_id)
        cur = await conn.cursor(row_factory=dict_row).execute(
            "SELECT * FROM lv_control.memberships WHERE project_id = %s ORDER BY created_at",
            [project_id],
        )
        return [_membership(r) for r in await cur.fetchall()]


ProjectAccess = tuple[frozenset[Role], uuid.UUID | None, str | None]
NO_ACCESS: ProjectAccess = (frozenset(), None, None)


async def roles_in_project(
    db: RuntimeDatabase,
    actor: Actor,
    project_id: uuid.UUID,
    *,
    conn: psycopg.AsyncConnection[Any] | None = None,
) -> ProjectAccess:
    """The actor's live roles in a project, its organization and region; (∅, None, None) when
    the project does not exist for this actor. With ``conn`` (the transaction that just
    authenticated the caller) the lookup switches that transaction to the actor's own context
    and runs there, saving a transaction per request."""
    if actor.token_project_ids is not None and project_id not in actor.token_project_ids:
        return NO_ACCESS
    if conn is not None:
        await conn.execute(SET_CONTROL_CONTEXT, ControlContext.for_actor(actor).params())
        return await _roles_on(conn, actor, project_id)
    async with db.control_tx(ControlContext.for_actor(actor)) as own:
        return await _roles_on(own, actor, project_id)


async def _roles_on(
    conn: psycopg.AsyncConnection[Any], actor: Actor, project_id: uuid.UUID
) -> ProjectAccess:
    # under the actor's context: RLS shows only projects of their organization (or all, for
    # a system administrator)
    cur = await conn.execute(
        "SELECT p.org_id, p.region, m.role FROM lv_control.projects p "
        "LEFT JOIN lv_control.memberships m ON m.project_id = p.id AND m.user_id = %s "
        "WHERE p.id = %s AND p.status = 'active'",
        [actor.user_id, project_id],
    )
    row = await cur.fetchone()
    if row is None:
        return NO_ACCESS
    return project_access_of(actor, *row)


def project_access_of(
    actor: Actor, org_id: uuid.UUID, region: str, member_role: str | None
) -> ProjectAccess:
    """The actor's roles in a project they can see (its organization, region and the role of
    their membership there, if any); a token's roles are capped at its maximum role."""
    roles: set[Role] = set()
    if member_role is not None and (
        actor.kind is not ActorKind.TOKEN or token_allows(actor.token_max_role, member_role)
    ):
        roles.add(Role(member_role))
    if actor.is_org_admin and actor.org_id == org_id:
        roles.add(Role.ORG_ADMIN)
    if actor.is_system_admin:
        roles.add(Role.SYSTEM_ADMIN)
    return frozenset(roles), org_id, region


async def project_member_ids(
    db: RuntimeDatabase, project_id: uuid.UUID, role: str
) -> list[uuid.UUID]:
    """The live members of a project holding ``role`` (ids only), e.g. to route reviews.

    One statement: ``lv_control.project_member_ids`` reads them in the platform's context."""
    rows = await db.control_call("SELECT lv_control.project_member_ids(%s, %s)", [project_id, role])
    return [r[0] for r in rows]
