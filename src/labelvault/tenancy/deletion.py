"""Deleting a project for good: crypto-shredding, purging and dropping, with a signed receipt.

:func:`delete_project` (organization admin of the project's organization, or a system admin):

1. validates the reason, marks the project ``deleting`` (committed: from here on no new
   connection pool is opened for it and no one can reach it through the API);
2. closes this process's pool of the project and counts the rows of every table of its schema
   (and the head of its audit chain) on a connection of the project's own role;
3. crypto-shreds its keys (``KeyService.shred``: tombstones in ``lv_control.data_keys`` and the
   provider's scope key material destroyed), so every copy of its data, backups included,
   is unreadable from now on;
4. purges its blobs from the blob store;
5. in one control-plane transaction: drops its schema and role (``lv_control.drop_project``,
   SECURITY DEFINER, see :mod:`labelvault.db.deprovision`), deletes its credential row and
   memberships, clears it as an SSO default, marks it ``deleted`` and appends a
   ``project.delete`` audit event holding the signed receipt.

Every step is idempotent: if the process dies part-way, calling it again (the project is then
``deleting``) finishes the job. :func:`shred_project` is step 3 alone (e.g. retention expiry):
the project stays, and reading any of its values fails with DataDestroyedError.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import uuid
from typing import Any

import psycopg
from psycopg import sql

from labelvault.audit.record import audit_control, build_event
from labelvault.audit.signing import load_signer
from labelvault.crypto import scope_of
from labelvault.db.context import ControlContext
from labelvault.db.dsn import derive_dsn
from labelvault.db.names import project_role, project_schema
from labelvault.kernel.actor import Actor
from labelvault.kernel.errors import ConflictError, NotFoundError, PermissionDeniedError
from labelvault.kernel.ids import parse_id
from labelvault.keys.receipts import DeletionReceipt
from labelvault.tenancy.service import CREDENTIAL_COLUMN

__all__ = ["delete_project", "shred_project"]


def _require_admin(actor: Actor, org_id: uuid.UUID) -> None:
    if actor.is_system or actor.is_system_admin:
        return
    if actor.org_id != org_id:
        raise NotFoundError("project not found")
    if not actor.is_org_admin:
        raise PermissionDeniedError("only organization administrators delete projects")


async def _project_row(platform: Any, actor: Actor, project_id: uuid.UUID) -> dict[str, Any]:
    async with platform.db.control_tx(ControlContext.for_actor(actor)) as conn:
        cur = await conn.execute(
            "SELECT id, org_id, name, region, status FROM lv_control.projects WHERE id = %s",
            [project_id],
        )
        row = await cur.fetchone()
    if row is None:
        raise NotFoundError("project not found")
    return dict(zip(("id", "org_id", "name", "region", "status"), row, strict=True))


async def shred_project(
    platform: Any, actor: Actor, project_id: str | uuid.UUID, reason: str
) -> list[int]:
    """Crypto-shred a project's keys only (retention): its rows and blobs stay, unreadable.

    Returns the key versions destroyed; audited (``project.shred``).
    """
    pid = parse_id(project_id, what="project")
    build_event(actor, "project.shred", reason=reason)  # validates the reason before anything
    project = await _project_row(platform, actor, pid)
    _require_admin(actor, project["org_id"])
    versions: list[int] = await platform.keys.shred(scope_of(pid))
    async with platform.db.control_tx(ControlContext.system_context()) as conn:
        await audit_control(
            conn,
            actor,
            "project.shred",
            resource_type="project",
            resource_id=pid,
            project_id=pid,
            org_id=project["org_id"],
            reason=reason,
            privileged=True,
            details={"key_versions": ",".join(str(v) for v in versions)},
        )
    return versions


async def _load_credential(platform: Any, project_id: uuid.UUID) -> str | None:
    async with platform.db.control_tx(ControlContext.system_context()) as conn:
        cur = await conn.execute(
            "SELECT secret FROM lv_control.project_credentials WHERE project_id = %s",
            [project_id],
        )
        row = await cur.fetchone()
    if row is None:
        return None
    secret: bytes = platform.sealer.unseal(
        bytes(row[0]), table=CREDENTIAL_COLUMN[0], row=str(project_id), column=CREDENTIAL_COLUMN[1]
    )
    return secret.decode()


def _count_rows(dsn: str, schema: str) -> tuple[dict[str, int], str | None]:
    """Row counts of every table of the project schema (as ``system`` on the project's own role,
    so row-level security shows every row), and the head of its audit chain."""
    counts: dict[str, int] = {}
    head = None
    with psycopg.connect(dsn, autocommit=False, connect_timeout=10) as conn:
        conn.execute("SELECT set_config('lv.role', 'system', true)")
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') "
                "AND has_table_privilege(c.oid, 'SELECT') ORDER BY c.relname",
                [schema],
            )
        ]
        for table in tables:
            row = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))
            ).fetchone()
            counts[table] = int(row[0]) if row else 0
        if "audit_events" in tables:
            last = conn.execute(
                sql.SQL("SELECT seq, chain_hash FROM {} ORDER BY seq DESC LIMIT 1").format(
                    sql.Identifier(schema, "audit_events")
                )
            ).fetchone()
            if last is not None:
                head = f"{last[0]}:{base64.b64encode(bytes(last[1])).decode('ascii')}"
        conn.rollback()
    return counts, head


async def _rows_before_drop(
    platform: Any, project_id: uuid.UUID
) -> tuple[dict[str, int], str | None]:
    password = await _load_credential(platform, project_id)
    if password is None:  # a rerun after the drop: nothing left to count
        return {}, None
    dsn = derive_dsn(
        platform.target.owner_dsn,
        user=project_role(project_id),
        password=password,
        dbname=platform.target.dbname,
    )
    try:
        return await asyncio.to_thread(_count_rows, dsn, project_schema(project_id))
    except psycopg.OperationalError:
        return {}, None  # the role is gone already (a rerun after a partial drop)


async def delete_project(
    platform: Any, actor: Actor, project_id: str | uuid.UUID, reason: str
) -> DeletionReceipt:
    """Delete a project and everything in it; returns the signed :class:`DeletionReceipt`."""
    pid = parse_id(project_id, what="project")
    build_event(actor, "project.delete", reason=reason)  # validates the reason before anything
    project = await _project_row(platform, actor, pid)
    _require_admin(actor, project["org_id"])
    if project["status"] == "deleted":
        raise ConflictError("the project is already deleted")
    if project["status"] not in ("active", "deleting", "provisioning"):
        raise ConflictError(f"the project is {project['status']}")
    signer = await load_signer(platform)

    # 1. no new pools, no API access from here on
    async with platform.db.control_tx(ControlContext.system_context()) as conn:
        await conn.execute(
            "UPDATE lv_control.projects SET status = 'deleting' WHERE id = %s AND status <> "
            "'deleted'",
            [pid],
        )
    await platform.db.projects.forget(pid)

    # 2. what is about to be destroyed
    rows, head = await _rows_before_drop(platform, pid)

    # 3. crypto-shredding: from here on, no copy of the data can be read
    scope = scope_of(pid)
    await platform.keys.shred(scope)
    provider_destroys = callable(getattr(platform.keys.provider, "destroy_scope", None))

    # 4. blobs
    blobs_purged = int(await asyncio.to_thread(platform.blobs.purge_project, pid))
    await platform.db.projects.forget(pid)

    # 5. schema, role, credential, memberships, status and the audit event: all or nothing
    async with platform.db.control_tx(ControlContext.system_context()) as conn:
        await conn.execute("SELECT lv_control.drop_project(%s)", [pid])
        cur = await conn.execute(
            "DELETE FROM lv_control.project_credentials WHERE project_id = %s", [pid]
        )
        credential_deleted = cur.rowcount > 0
        cur = await conn.execute("DELETE FROM lv_control.memberships WHERE project_id = %s", [pid])
        memberships = cur.rowcount
        await conn.execute(
            "UPDATE lv_control.organizations SET sso_default_project = NULL "
            "WHERE sso_default_project = %s",
            [pid],
        )
        await conn.execute("UPDATE lv_control.projects SET status = 'deleted' WHERE id = %s", [pid])
        cur = await conn.execute(
            "SELECT version FROM lv_control.data_keys WHERE scope = %s AND state = 'destroyed' "
            "ORDER BY version",
            [scope],
        )
        versions = [int(r[0]) for r in await cur.fetchall()]
        receipt = DeletionReceipt(
            project_id=str(pid),
            org_id=str(project["org_id"]),
            project_name=str(project["name"]),
            region=str(project["region"]),
            deleted_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            deleted_by=_who(actor),
            actor_kind=actor.kind.value,
            reason=reason,
            key_provider=str(platform.keys.provider.name),
            key_versions_destroyed=versions,
            provider_key_material_destroyed=provider_destroys,
            blobs_purged=blobs_purged,
            rows=rows,
            rows_total=sum(rows.values()),
            audit_chain_head=head,
            schema_dropped=project_schema(pid),
            role_dropped=project_role(pid),
            memberships_removed=memberships,
            credential_deleted=credential_deleted,
        ).signed(signer)
        await audit_control(
            conn,
            actor,
            "project.delete",
            resource_type="project",
            resource_id=pid,
            project_id=pid,
            org_id=project["org_id"],
            reason=reason,
            privileged=True,
            details=receipt.audit_details(),
        )
    return receipt


def _who(actor: Actor) -> str:
    if actor.user_id is not None:
        return str(actor.user_id)
    return actor.label or actor.kind.value
