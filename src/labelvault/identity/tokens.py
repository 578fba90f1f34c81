"""API tokens for programs: shown once, stored as a hash, scoped, expiring and revocable.

A token acts for its user, only in the projects it names and never above its maximum role; the
user's live memberships are checked on every request, so a token never grants more than its
user currently has.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from labelvault.audit.record import audit_control
from labelvault.auth import new_api_token, parse_api_token
from labelvault.db.context import ControlContext
from labelvault.db.runtime import RuntimeDatabase
from labelvault.identity.models import TokenInfo
from labelvault.kernel.actor import Actor, ActorKind
from labelvault.kernel.errors import (
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from labelvault.tenancy.validation import clean_name

MAX_TOKEN_DAYS = 365
TOKEN_ROLES = ("annotator", "reviewer", "manager", "data_owner")
# a manager may do everything a data owner may, and more: a token capped at data_owner never
# acts as a manager
ROLE_RANK = {"annotator": 1, "reviewer": 2, "data_owner": 3, "manager": 4}
TOUCH_EVERY = dt.timedelta(seconds=60)
# runs in the authenticating transaction, with the accepted actor
AfterAuthentication = Callable[[AsyncConnection[Any], Actor], Awaitable[None]]


@dataclass(frozen=True)
class CreatedToken:
    token: str  # shown once
    info: TokenInfo

    def __repr__(self) -> str:
        return f"CreatedToken(token=lv_**********, info={self.info!r})"


def _info(row: dict[str, Any]) -> TokenInfo:
    return TokenInfo(
        row["id"],
        row["user_id"],
        row["name"],
        row["prefix"],
        list(row["project_ids"]),
        row["max_role"],
        row["expires_at"],
        row["last_used_at"],
        row["created_at"],
        row["revoked_at"],
    )


def token_allows(max_role: str | None, member_role: str) -> bool:
    return max_role is None or ROLE_RANK[member_role] <= ROLE_RANK[max_role]


async def create_token(
    db: RuntimeDatabase,
    actor: Actor,
    *,
    name: str,
    project_ids: list[uuid.UUID],
    max_role: str,
    expires_in_days: int = 90,
) -> CreatedToken:
    if actor.kind is not ActorKind.USER or actor.user_id is None:
        raise PermissionDeniedError("tokens are created from a signed-in session")
    if not actor.recently_authenticated:
        raise PermissionDeniedError("confirm your password first (re-authentication required)")
    name = clean_name(name)
    if max_role not in TOKEN_ROLES:
        raise InvalidInputError(
            f"max_role must be one of {', '.join(TOKEN_ROLES)}", field="max_role"
        )
    if not isinstance(expires_in_days, int) or not 1 <= expires_in_days <= MAX_TOKEN_DAYS:
        raise InvalidInputError(
            f"expires_in_days must be 1..{MAX_TOKEN_DAYS}", field="expires_in_days"
        )
    if not project_ids or len(project_ids) > 100:
        raise InvalidInputError("name between 1 and 100 projects", field="project_ids")
    new = new_api_token()
    token_id = uuid.uuid4()
    async with db.control_tx(ControlContext.for_actor(actor)) as conn:
        cur = await conn.execute(
            "SELECT project_id FROM lv_control.memberships m JOIN lv_control.projects p "
            "ON p.id = m.project_id AND p.status = 'active' "
            "WHERE m.user_id = %s AND m.project_id = ANY(%s)",
            [actor.user_id, project_ids],
        )
        reachable = {r[0] for r in await cur.fetchall()}
        if set(project_ids) - reachable:
            raise NotFoundError("project not found")
        dcur = await conn.cursor(row_factory=dict_row).execute(
            "INSERT INTO lv_control.api_tokens (id, user_id, org_id, token_hash, prefix, name, "
            "project_ids, max_role, expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, "
            "now() + make_interval(days => %s)) RETURNING *",
            [
                token_id,
                actor.user_id,
                actor.org_id,
                new.token_hash,
                new.prefix,
                name,
                sorted(set(project_ids)),
                max_role,
                expires_in_days,
            ],
        )
        row = await dcur.fetchone()
        assert row is not None
        await audit_control(
            conn,
            actor,
            "token.create",
            resource_type="api_token",
            resource_id=token_id,
            details={
                "max_role": max_role,
                "projects": len(set(project_ids)),
                "days": expires_in_days,
            },
        )
    return CreatedToken(new.plaintext, _info(row))


async def list_tokens(
    db: RuntimeDatabase, actor: Actor, user_id: uuid.UUID | None = None
) -> list[TokenInfo]:
    async with db.control_tx(ControlContext.for_actor(actor)) as conn:
        cur = await conn.cursor(row_factory=dict_row).execute(
            "SELECT * FROM lv_control.api_tokens WHERE user_id = %s ORDER BY created_at DESC",
            [user_id or actor.user_id],
        )
        return [_info(r) for r in await cur.fetchall()]


async def revoke_token(db: RuntimeDatabase, actor: Actor, token_id: uuid.UUID) -> None:
    async with db.control_tx(ControlContext.for_actor(actor)) as conn:
        cur = await conn.execute(
            "SELECT user_id, org_id FROM lv_control.api_tokens WHERE id = %s", [token_id]
        )
        row = await cur.fetchone()
        if row is None:
            raise NotFoundError("token not found")
        own = row[0] == actor.user_id
        admin = (
            actor.is_system_admin
            or actor.is_system
            or (actor.is_org_admin and actor.org_id == row[1])
        )
        if not (own or admin):
            raise NotFoundError("token not found")
        await conn.execute(
            "UPDATE lv_control.api_tokens SET revoked_at = now(), revoked_by = %s "
            "WHERE id = %s AND revoked_at IS NULL",
            [actor.user_id, token_id],
        )
        await audit_control(
            conn,
            actor,
            "token.revoke",
            resource_type="api_token",
            resource_id=token_id,
            org_id=row[1],
        )


_LOOKUP = """
SELECT t.id, t.user_id, t.project_ids, t.max_role, t.expires_at, t.revoked_at, t.last_used_at,
       now() AS now, u.org_id, u.status, u.is_system_admin, u.is_org_admin,
       coalesce(o.status, 'active') AS org_status
  FROM lv_control.api_tokens t
  JOIN lv_control.users u ON u.id = t.user_id
  LEFT JOIN lv_control.organizations o ON o.id = u.org_id
 WHERE t.token_hash = %s
"""


def token_is_refused(row: Mapping[str, Any] | None) -> bool:
    """Unknown, revoked, expired, or its user or organization no longer active."""
    return (
        row is None
        or row["revoked_at"] is not None
        or row["expires_at"] <= row["now"]
        or row["status"] != "active"
        or row["org_status"] != "active"
    )


def token_is_due_a_touch(row: Mapping[str, Any]) -> bool:
    """Its last use is recorded (and audited) at most once per ``TOUCH_EVERY``."""
    return row["last_used_at"] is None or row["now"] - row["last_used_at"] >= TOUCH_EVERY


def token_actor(
    row: Mapping[str, Any],
    *,
    source_address: str | None,
    user_agent: str | None,
    request_id: str | None,
) -> Actor:
    return Actor(
        kind=ActorKind.TOKEN,
        user_id=row["user_id"],
        org_id=row["org_id"],
        # a token acts within projects only: never with the user's administrator rights
        is_system_admin=False,
        is_org_admin=False,
        token_id=row["id"],
        source_address=source_address,
        user_agent=user_agent,
        request_id=request_id,
        token_project_ids=frozenset(row["project_ids"]),
        token_max_role=row["max_role"],
    )


async def resolve_token(
    db: RuntimeDatabase,
    token: str,
    *,
    source_address: str | None = None,
    user_agent: str | None = None,
    request_id: str | None = None,
    then: AfterAuthentication | None = None,
) -> Actor:
    """The actor of an API token. ``then(conn, actor)`` runs in the same transaction once the
    token is accepted (the request's authorization lookups), saving a transaction."""
    token_hash = parse_api_token(token)
    if token_hash is None:
        raise UnauthenticatedError("the API token is not valid")
    async with db.control_tx(ControlContext.system_context()) as conn:
        cur = await conn.cursor(row_factory=dict_row).execute(_LOOKUP, [token_hash])
        row = await cur.fetchone()
        rejected = token_is_refused(row)
        if rejected:
            # recorded in this transaction, which commits: the refusal is raised after it
            await audit_control(
                conn,
                None,
                "auth.token.rejected",
                outcome="denied",
                token_id=str(row["id"]) if row else None,
                source_address=source_address,
                request_id=request_id,
            )
        elif row is not None and token_is_due_a_touch(row):
            await conn.execute(
                "UPDATE lv_control.api_tokens SET last_used_at = now() WHERE id = %s", [row["id"]]
            )
            await audit_control(
                conn,
                None,
                "auth.token.use",
                actor_kind="token",
                actor_id=str(row["user_id"]),
                token_id=str(row["id"]),
                org_id=row["org_id"],
                source_address=source_address,
                request_id=request_id,
            )
        actor = None
        if not rejected and row is not None:
            actor = token_actor(
                row, source_address=source_address, user_agent=user_agent, request_id=request_id
            )
            if then is not None:
                await then(conn, actor)
    if actor is None:
        raise UnauthenticatedError("the API token is not valid (revoked, expired or unknown)")
    return actor
