"""Organizations and projects: creation (with provisioning), lookup and listing.

Functions take the database, the acting principal and what they need; each runs in one
transaction so nothing is left half-created: the project row, its encrypted credential and its
schema and role (through ``lv_control.provision_project``) land together or not at all.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import psycopg
from psycopg.rows import dict_row

from labelvault.audit.record import audit_control
from labelvault.db.context import ControlContext
from labelvault.db.runtime import RuntimeDatabase
from labelvault.db.scram import scram_verifier
from labelvault.kernel.actor import Actor
from labelvault.kernel.errors import ConflictError, NotFoundError, PermissionDeniedError
from labelvault.kernel.ids import new_id, parse_id
from labelvault.tenancy.models import Organization, Project
from labelvault.tenancy.validation import clean_name, clean_region

CREDENTIAL_COLUMN = ("project_credentials", "secret")


class SecretSealer(Protocol):
    """Encrypts control-plane secrets, bound to the table, row and column they live in."""

    def seal(self, plaintext: bytes, *, table: str, row: str, column: str) -> bytes: ...

    def unseal(self, blob: bytes, *, table: str, row: str, column: str) -> bytes: ...


def _org(row: dict[str, Any]) -> Organization:
    return Organization(
        row["id"],
        row["name"],
        row["region"],
        row["status"],
        row["require_mfa"],
        row["require_sso"],
        row["created_at"],
    )


def _project(row: dict[str, Any]) -> Project:
    return Project(
        row["id"], row["org_id"], row["name"], row["region"], row["status"], row["created_at"]
    )


def _require_org_admin(actor: Actor, org_id: uuid.UUID) -> None:
    if actor.is_system or actor.is_system_admin:
        return
    if actor.org_id != org_id:
        raise NotFoundError("organization not found")
    if not actor.is_org_admin:
        raise PermissionDeniedError("only organization administrators may do this")


async def create_organization(
    db: RuntimeDatabase, actor: Actor, *, name: str, region: str
) -> Organization:
    if not (actor.is_system or actor.is_system_admin):
        raise PermissionDeniedError("only system administrators create organizations")
    clean = clean_name(name)
    region = clean_region(region)
    org_id = new_id()
    async with db.control_tx(ControlContext.for_actor(actor)) as conn:
        try:
            async with conn.transaction():
                cur = await conn.cursor(row_factory=dict_row).execute(
                    "INSERT INTO lv_control.organizations (id, name, region) VALUES (%s, %s, %s) "
                    "RETURNING *",
                    [org_id, clean, region],
                )
                row = await cur.fetchone()
        except psycopg.errors.UniqueViolation:
            raise ConflictError(f"an organization named {clean!r} already exists") from None
        assert row is not None
        await audit_control(
            conn,
            actor,
            "org.create",
            resource_type="organization",
            resource_id=org_id,
            org_id=org_id,
        )
    return _org(row)


async def get_organization(db: RuntimeDatabase, actor: Actor, org: str | uuid.UUID) -> Organization:
    """By id or by (case-insensitive) name, within what the actor may see."""
    async with db.control_tx(ControlContext.for_actor(actor)) as conn:
        cur = conn.cursor(row_factory=dict_row)
        try:
            org_id = parse_id(org, what="organization")
            await cur.execute("SELECT * FROM lv_control.organizations WHERE id = %s", [org_id])
        except NotFoundError:
            await cur.execute(
                "SELECT * FROM lv_control.organizations WHERE lower(name) = lower(%s)", [str(org)]
            )
        row = await cur.fetchone()
    if row is None:
        raise NotFoundError("organization not found")
    return _org(row)


async def list_organizations(db: RuntimeDatabase, actor: Actor) -> list[Organization]:
    async with db.control_tx(ControlContext.for_actor(actor)) as conn:
        cur = await conn.cursor(row_factory=dict_row).execute(
            "SELECT * FROM lv_control.organizations ORDER BY lower(name)"
        )
        return [_org(r) for r in await cur.fetchall()]


async def create_project(
    db: RuntimeDatabase,
    sealer: SecretSealer,
    actor: Actor,
    *,
    org_id: uuid.UUID,
    name: str,
    region: str | None = None,
) -> Project:
    _require_org_admin(actor, org_id)
    clean = clean_name(name)
    project_id = new_id()
    password = secrets.token_urlsafe(32)
    sealed = sealer.seal(
        password.encode(),
        table=CREDENTIAL_COLUMN[0],
        row=str(project_id),
        column=CREDENTIAL_COLUMN[1],
    )
    async with db.control_tx(ControlContext.for_actor(actor)) as conn:
        cur = await conn.execute(
            "SELECT region FROM lv_control.organizations WHERE id = %s", [org_id]
        )
        org_row = await cur.fetchone()
        if org_row is None:
            raise NotFoundError("organization not found")
        project_region = clean_region(region) if region is not None else org_row[0]
        try:
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO lv_control.projects (id, org_id, name, region, created_by) "
                    "VALUES (%s, %s, %s, %s, %s)",
                    [project_id, org_id, clean, project_region, actor.user_id],
                )
        except psycopg.errors.UniqueViolation:
            raise ConflictError(
                f"a project named {clean!r} already exists in this organization", field="name"
            ) from None
        await conn.execute(
            "INSERT INTO lv_control.project_credentials (project_id, org_id, secret) "
            "VALUES (%s, %s, %s)",
            [project_id, org_id, sealed],
        )
        await conn.execute(
            "SELECT lv_control.provision_project(%s, %s)", [project_id, scram_verifier(password)]
        )
        dcur = await conn.cursor(row_factory=dict_row).execute(
            "UPDATE lv_control.projects SET status = 'active' WHERE id = %s RETURNING *",
            [project_id],
        )
        row = await dcur.fetchone()
        assert row is not None
        await audit_control(
            conn,
            actor,
            "project.create",
            resource_type="project",
            resource_id=project_id,
            org_id=org_id,
        )
    return _project(row)


async def get_project(db: RuntimeDatabase, actor: Actor, project_id: str | uuid.UUID) -> Project:
    pid = parse_id(project_id, what="project")
    async with db.control_tx(ControlContext.for_actor(actor)) as conn:
        cur = await conn.cursor(row_factory=dict_row).execute(
            "SELECT * FROM lv_control.projects WHERE id = %s AND status = 'active'", [pid]
        )
        row = await cur.fetchone()
    if row is None:
        raise NotFoundError("project not found")
    return _project(row)


async def find_project(
    db: RuntimeDatabase, actor: Actor, *, org_id: uuid.UUID, name: str
) -> Project:
    async with db.control_tx(ControlContext.for_actor(actor)) as conn:
        cur = await conn.cursor(row_factory=dict_row).execute(
            "SELECT * FROM lv_control.projects WHERE org_id = %s AND lower(name) = lower(%s) "
            "AND status = 'active'",
            [org_id, name],
        )
        row = await cur.fetchone()
    if row is None:
        raise NotFoundError("project not found")
    return _project(row)


async def list_projects(
    db: RuntimeDatabase, actor: Actor, *, org_id: uuid.UUID | None = None
) -> list[Project]:
    async with db.control_tx(ControlContext.for_actor(actor)) as conn:
        cur = conn.cursor(row_factory=dict_row)
        if org_id is None:
            await cur.execute(
                "SELECT * FROM lv_control.projects WHERE status = 'active' ORDER BY created_at"
            )
        else:
            await cur.execute(
                "SELECT * FROM lv_control.projects WHERE status = 'active' AND org_id = %s "
                "ORDER BY created_at",
                [org_id],
            )
        return [_project(r) for r in await cur.fetchall()]


def credential_loader(
    db: RuntimeDatabase, sealer: SecretSealer
) -> Callable[[uuid.UUID], Awaitable[str]]:
    """The project-credential loader the per-project pools use (system context, decrypting)."""

    async def load(project_id: uuid.UUID) -> str:
        async with db.control_tx(ControlContext.system_context()) as conn:
            cur = await conn.execute(
                "SELECT c.secret FROM lv_control.project_credentials c "
                "JOIN lv_control.projects p ON p.id = c.project_id "
                "WHERE c.project_id = %s AND p.status = 'active'",
                [project_id],
            )
            row = await cur.fetchone()
        if row is None:
            raise NotFoundError("project not found")
        return sealer.unseal(
            bytes(row[0]),
            table=CREDENTIAL_COLUMN[0],
            row=str(project_id),
            column=CREDENTIAL_COLUMN[1],
        ).decode()

    return load
