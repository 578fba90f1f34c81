"""Reading and exporting the audit trail; every read and export is itself audited.

* A project's trail is read on that project's own connection: RLS lets ``manager``,
  ``data_owner`` and ``system`` read it. Members read as their role; organization and system
  administrators read in the ``system`` context, recorded as privileged access with the reason
  ``administrator trail review``.
* An organization's trail is its rows of the control chain, read in the caller's control
  context (RLS: own organization, or system).
* The read is recorded (``audit.read``) in the chain being read, in the same transaction.
  An export records ``audit.export`` first (committed before any event leaves), then signs a
  fresh checkpoint covering it, then streams the chain up to that checkpoint.

Filters on event fields use the stored canonical JSON body (``convert_from(body, 'UTF8')::jsonb``);
cursor pagination is by ``seq`` (keyset), newest first by default.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Literal

from psycopg import AsyncConnection

from labelvault.access import Role
from labelvault.audit.chain import StoredEvent
from labelvault.audit.checkpointer import (
    CONTROL_CHAIN,
    ChainBrokenError,
    chain_connection,
    checkpoint_chain,
    origin_for,
    project_chain_id,
)
from labelvault.audit.export import event_line, event_record, trailer_line, ts_us_of
from labelvault.audit.record import audit_control, audit_project
from labelvault.audit.sealer import seal_control, seal_project
from labelvault.db.context import ControlContext, ProjectContext
from labelvault.db.names import project_schema
from labelvault.kernel.actor import Actor
from labelvault.kernel.errors import InvalidInputError

if TYPE_CHECKING:
    from labelvault.platform import Platform

MAX_LIMIT: Final = 500
DEFAULT_LIMIT: Final = 100
EXPORT_BATCH: Final = 5_000
EXPORT_NOTES: Final = 100  # checkpoints included in an export (the newest ones)
ADMIN_REASON: Final = "administrator trail review"
OPERATOR_REASON: Final = "operator trail export"
_ACTION_FILTER_RE: Final = re.compile(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)*(\.\*)?")
_COLS: Final = "seq, ts_us, body, leaf, prev_hash, chain_hash"

Order = Literal["asc", "desc"]


@dataclass(frozen=True, slots=True)
class TrailFilters:
    actor_id: str | None = None
    action: str | None = None  # exact, or a prefix ending in ".*" (e.g. "auth.*")
    resource_type: str | None = None
    resource_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    cursor: int | None = None  # seq of the last event of the previous page
    limit: int = DEFAULT_LIMIT
    order: Order = "desc"

    def __post_init__(self) -> None:
        for name in ("actor_id", "resource_type", "resource_id"):
            value = getattr(self, name)
            if value is not None and (not value or len(value) > 200 or not value.isprintable()):
                raise InvalidInputError(f"{name} filter is malformed", field=name)
        if self.action is not None and (
            len(self.action) > 200 or not _ACTION_FILTER_RE.fullmatch(self.action)
        ):
            raise InvalidInputError("action filter is malformed", field="action")
        if not 1 <= self.limit <= MAX_LIMIT:
            raise InvalidInputError(f"limit must be 1..{MAX_LIMIT}", field="limit")
        if self.cursor is not None and self.cursor < 0:
            raise InvalidInputError("cursor is malformed", field="cursor")
        if self.order not in ("asc", "desc"):
            raise InvalidInputError("order must be asc or desc", field="order")

    def details(self) -> dict[str, str | int | bool | None]:
        """What was asked for, recorded with the read (no values beyond the filters)."""
        out: dict[str, str | int | bool | None] = {}
        for name in ("actor_id", "action", "resource_type", "resource_id"):
            value = getattr(self, name)
            if value is not None:
                out[f"filter_{name}"] = value
        if self.since is not None:
            out["filter_since_us"] = ts_us_of(self.since)
        if self.until is not None:
            out["filter_until_us"] = ts_us_of(self.until)
        return out


@dataclass(slots=True)
class TrailPage:
    events: list[dict[str, Any]] = field(default_factory=list)
    next_cursor: int | None = None


def _query(
    table: str, f: TrailFilters, extra: str = "", extra_params: list[Any] | None = None
) -> tuple[str, list[Any]]:
    where: list[str] = []
    params: list[Any] = list(extra_params or [])
    if extra:
        where.append(extra)
    j = "convert_from(body, 'UTF8')::jsonb"
    for name in ("actor_id", "resource_type", "resource_id"):
        value = getattr(f, name)
        if value is not None:
            where.append(f"{j} ->> '{name}' = %s")
            params.append(value)
    if f.action is not None:
        if f.action.endswith(".*"):
            prefix = f.action[:-1].replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%")
            where.append(f"{j} ->> 'action' LIKE %s")
            params.append(prefix + "%")
        else:
            where.append(f"{j} ->> 'action' = %s")
            params.append(f.action)
    if f.since is not None:
        where.append("ts_us >= %s")
        params.append(ts_us_of(f.since))
    if f.until is not None:
        where.append("ts_us <= %s")
        params.append(ts_us_of(f.until))
    if f.cursor is not None:
        where.append("seq < %s" if f.order == "desc" else "seq > %s")
        params.append(f.cursor)
    sql = f"SELECT {_COLS} FROM {table}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY seq {'DESC' if f.order == 'desc' else 'ASC'} LIMIT %s"
    params.append(f.limit + 1)
    return sql, params


async def _page(conn: AsyncConnection[Any], sql: str, params: list[Any], limit: int) -> TrailPage:
    cur = conn.cursor(binary=True)
    await cur.execute(sql, params)
    rows = await cur.fetchall()
    page = TrailPage([event_record(StoredEvent(*r)) for r in rows[:limit]])
    if len(rows) > limit:
        page.next_cursor = int(rows[limit - 1][0])
    return page


def project_reader(roles: frozenset[Role] | set[Role]) -> tuple[str, bool]:
    """The project context role to read the trail as, and whether that is privileged."""
    if Role.MANAGER in roles:
        return "manager", False
    if Role.DATA_OWNER in roles:
        return "data_owner", False
    if Role.ORG_ADMIN in roles or Role.SYSTEM_ADMIN in roles:
        return "system", True
    raise InvalidInputError("no role that may read the audit trail")  # authorize prevents this


async def read_project_trail(
    platform: Platform,
    actor: Actor,
    roles: frozenset[Role],
    project_id: uuid.UUID,
    filters: TrailFilters,
    *,
    org_id: uuid.UUID | None = None,
) -> TrailPage:
    role, privileged = project_reader(roles)
    ctx = ProjectContext(actor.user_id, role)
    sql, params = _query(f"{project_schema(project_id)}.audit_events", filters)
    await seal_project(platform.db, project_id)  # the reader sees every committed event
    async with platform.db.project_tx(project_id, ctx) as conn:
        page = await _page(conn, sql, params, filters.limit)
        await audit_project(
            conn,
            actor,
            "audit.read",
            resource_type="audit_trail",
            resource_id=project_id,
            project_id=project_id,
            org_id=org_id,
            privileged=privileged,
            reason=ADMIN_REASON if privileged else None,
            details={**filters.details(), "count": len(page.events)},
        )
    return page


async def read_org_trail(
    platform: Platform, actor: Actor, org_id: uuid.UUID, filters: TrailFilters
) -> TrailPage:
    privileged = actor.org_id != org_id  # a system administrator reading another organization
    sql, params = _query("lv_control.audit_events", filters, "org_id = %s", [org_id])
    await seal_control(platform.db)
    async with platform.db.control_tx(ControlContext.for_actor(actor)) as conn:
        page = await _page(conn, sql, params, filters.limit)
        await audit_control(
            conn,
            actor,
            "audit.read",
            resource_type="audit_trail",
            resource_id=org_id,
            org_id=org_id,
            privileged=privileged,
            reason=ADMIN_REASON if privileged else None,
            details={**filters.details(), "count": len(page.events)},
        )
    return page


# -- export --------------------------------------------------------------------------------------


async def _export_stream(
    platform: Platform, chain_id: str, record: Callable[[], Awaitable[int]]
) -> AsyncIterator[bytes]:
    """Record the export (committed), checkpoint the chain, then yield the export's lines."""
    from labelvault.audit.signing import load_signer

    await record()
    signer = await load_signer(platform)
    broken = False
    try:
        await checkpoint_chain(platform, chain_id, signer)
    except ChainBrokenError:  # export anyway, all of it: the verifier says what is wrong
        broken = True
    async with platform.db.control_tx(ControlContext.system_context()) as conn:
        cur = await conn.execute(
            "SELECT size, note FROM lv_control.audit_checkpoints WHERE chain_id = %s "
            "ORDER BY size DESC LIMIT %s",
            [chain_id, EXPORT_NOTES],
        )
        rows = list(reversed(await cur.fetchall()))
    # the checkpoint was signed after sealing, so it covers the export's own event
    upto = max((int(s) for s, _ in rows), default=0)
    if broken:  # no new checkpoint: up to the head, so the break and what follows are shown
        async with chain_connection(platform, chain_id) as (conn, table):
            cur = await conn.execute(f"SELECT coalesce(max(seq), 0) FROM {table}")
            head = await cur.fetchone()
        upto = max(upto, int(head[0]) if head else 0)
    notes = [n for _, n in rows]

    async def lines() -> AsyncIterator[bytes]:
        after = 0
        while after < upto:
            async with chain_connection(platform, chain_id) as (conn, table):
                cur = conn.cursor(binary=True)
                await cur.execute(
                    f"SELECT {_COLS} FROM {table} WHERE seq > %s AND seq <= %s "
                    "ORDER BY seq LIMIT %s",
                    [after, upto, EXPORT_BATCH],
                )
                rows = await cur.fetchall()
            if not rows:
                break
            yield b"".join(event_line(StoredEvent(*r)) for r in rows)
            after = int(rows[-1][0])
        yield trailer_line(chain_id, origin_for(platform.settings.region, chain_id), upto, notes)

    return lines()


async def export_project_trail(
    platform: Platform,
    actor: Actor,
    roles: frozenset[Role],
    project_id: uuid.UUID,
    *,
    org_id: uuid.UUID | None = None,
    reason: str | None = None,
) -> AsyncIterator[bytes]:
    """The export's lines (an async iterator); the export is recorded before it starts."""
    role, privileged = project_reader(roles)
    ctx = ProjectContext(actor.user_id, role)

    async def record() -> int:
        async with platform.db.project_tx(project_id, ctx) as conn:
            return await audit_project(
                conn,
                actor,
                "audit.export",
                resource_type="audit_trail",
                resource_id=project_id,
                project_id=project_id,
                org_id=org_id,
                privileged=privileged or reason is not None,
                reason=reason or (ADMIN_REASON if privileged else None),
            )

    return await _export_stream(platform, project_chain_id(project_id), record)


async def export_control_trail(
    platform: Platform, actor: Actor, *, reason: str = OPERATOR_REASON
) -> AsyncIterator[bytes]:
    """The whole control chain (operators only: it spans every organization)."""

    async def record() -> int:
        async with platform.db.control_tx(ControlContext.system_context()) as conn:
            return await audit_control(
                conn,
                actor,
                "audit.export",
                resource_type="audit_trail",
                resource_id=CONTROL_CHAIN,
                privileged=True,
                reason=reason,
            )

    return await _export_stream(platform, CONTROL_CHAIN, record)
