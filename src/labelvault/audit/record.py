"""Appending audit events inside the caller's transaction (DESIGN invariant 5).

``record_control`` appends to the control-plane chain on a control connection, ``record_project``
to the project's own chain on that project's connection. Both run in the transaction of the
action they record, so the action cannot commit without its event and a failed append fails the
action. An append only queues the event (``audit_pending``); the sealer chains committed events
shortly after (see ``labelvault.audit.sealer``). ``project_append`` gives the statement itself,
for a caller that sends it with the transaction's other last statements (``commit_with``).
"""

from __future__ import annotations

import uuid
from typing import Any, LiteralString

from psycopg import AsyncConnection

from labelvault.audit.events import AuditEvent, DetailValue, Outcome, canonical_body
from labelvault.kernel.actor import Actor


def build_event(
    actor: Actor | None,
    action: str,
    *,
    outcome: Outcome = "success",
    resource_type: str | None = None,
    resource_id: object | None = None,
    project_id: uuid.UUID | None = None,
    org_id: uuid.UUID | None = None,
    reason: str | None = None,
    privileged: bool = False,
    details: dict[str, DetailValue] | None = None,
    **who: Any,
) -> AuditEvent:
    fields: dict[str, Any] = {
        "resource_type": resource_type,
        "resource_id": str(resource_id) if resource_id is not None else None,
        "project_id": str(project_id) if project_id else None,
        "reason": reason,
        "privileged": privileged,
        "details": details or {},
    }
    if org_id is not None:
        fields["org_id"] = str(org_id)
    kind = who.pop("actor_kind", "user")
    fields.update({k: v for k, v in who.items() if v is not None})
    if actor is None:
        return AuditEvent(action=action, outcome=outcome, actor_kind=kind, **fields)
    return AuditEvent.for_actor(actor, action=action, outcome=outcome, **fields)


async def record_control(conn: AsyncConnection[Any], event: AuditEvent) -> int:
    """Append to the control chain's pending events; returns the pending id (the chain
    sequence number is assigned when the sealer chains it, see ``labelvault.audit.sealer``)."""
    body = canonical_body(event)
    org = uuid.UUID(event.org_id) if event.org_id else None
    cur = await conn.execute("SELECT lv_control.audit_append(%s, %s)", [body, org])
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


def project_append(event: AuditEvent) -> tuple[LiteralString, list[Any]]:
    """The statement appending ``event`` to its project's chain (on that project's
    connection, inside the action's transaction)."""
    return "SELECT audit_append(%s)", [canonical_body(event)]


async def record_project(conn: AsyncConnection[Any], event: AuditEvent) -> int:
    cur = await conn.execute(*project_append(event))
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def audit_control(
    conn: AsyncConnection[Any], actor: Actor | None, action: str, **fields: Any
) -> int:
    """Shorthand: build and append a control-plane event."""
    return await record_control(conn, build_event(actor, action, **fields))


async def audit_project(
    conn: AsyncConnection[Any], actor: Actor | None, action: str, **fields: Any
) -> int:
    return await record_project(conn, build_event(actor, action, **fields))
