"""Server-side sessions: only a random secret in the cookie, its hash in the database.

A session ends by logout, by "sign out everywhere", by idle timeout or absolute lifetime, by a
password change (all other sessions), or when the user is disabled; every request looks the
session up again, so any of these takes effect on the very next request.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from labelvault.audit.events import sanitize_untrusted
from labelvault.audit.record import audit_control
from labelvault.auth import csrf_token_for, hash_session_secret, new_session_secret, verify_csrf
from labelvault.db.context import ControlContext
from labelvault.db.runtime import RuntimeDatabase
from labelvault.identity.models import SessionInfo
from labelvault.identity.tokens import AfterAuthentication
from labelvault.kernel.actor import Actor, ActorKind

REAUTH_WINDOW = dt.timedelta(minutes=30)
TOUCH_EVERY = dt.timedelta(seconds=60)


@dataclass(frozen=True)
class SessionPolicy:
    idle: dt.timedelta = dt.timedelta(minutes=30)
    absolute: dt.timedelta = dt.timedelta(hours=12)


@dataclass(frozen=True)
class NewSession:
    """What a successful sign-in step hands back: the secret goes in the cookie, once."""

    secret: str
    session_id: uuid.UUID
    user_id: uuid.UUID
    mfa_pending: bool
    mfa_enrollment_required: bool
    must_change_password: bool

    def __repr__(self) -> str:
        return f"NewSession(session_id={self.session_id}, mfa_pending={self.mfa_pending})"


def csrf_token(secret: str) -> str:
    """A CSRF token bound to the session: an HMAC keyed by the session secret itself."""
    return csrf_token_for(secret.encode(), hash_session_secret(secret))


def check_csrf(secret: str, token: str | None) -> bool:
    return bool(token) and verify_csrf(secret.encode(), hash_session_secret(secret), token or "")


async def create_session(
    conn: AsyncConnection[Any],
    *,
    user_id: uuid.UUID,
    org_id: uuid.UUID | None,
    policy: SessionPolicy,
    mfa_verified: bool,
    source_address: str | None,
    user_agent: str | None,
) -> tuple[str, uuid.UUID]:
    new = new_session_secret()
    session_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO lv_control.sessions (id, secret_hash, user_id, org_id, expires_at, "
        "mfa_verified_at, reauth_at, source_address, user_agent) VALUES (%s, %s, %s, %s, "
        "now() + %s, CASE WHEN %s THEN now() END, now(), %s, %s)",
        [
            session_id,
            new.secret_hash,
            user_id,
            org_id,
            policy.absolute,
            mfa_verified,
            sanitize_untrusted(source_address or "", 64) or None,
            sanitize_untrusted(user_agent or "", 512) or None,
        ],
    )
    return new.secret, session_id


_LOOKUP = """
SELECT s.id, s.user_id, s.created_at, s.last_seen_at, s.expires_at, s.mfa_verified_at,
       s.reauth_at, now() AS now, u.org_id, u.status, u.is_system_admin, u.is_org_admin,
       u.password_must_change, coalesce(o.status, 'active') AS org_status,
       coalesce(o.require_mfa, false) AS org_requires_mfa,
       EXISTS (SELECT 1 FROM lv_control.mfa_totp t
                WHERE t.user_id = u.id AND t.confirmed_at IS NOT NULL) AS has_totp
  FROM lv_control.sessions s
  JOIN lv_control.users u ON u.id = s.user_id
  LEFT JOIN lv_control.organizations o ON o.id = u.org_id
 WHERE s.secret_hash = %s AND s.ended_at IS NULL
"""


def mfa_required(row: dict[str, Any]) -> bool:
    return bool(
        row["has_totp"] or row["is_system_admin"] or row["is_org_admin"] or row["org_requires_mfa"]
    )


async def resolve_session(
    db: RuntimeDatabase,
    secret: str,
    *,
    policy: SessionPolicy,
    source_address: str | None = None,
    user_agent: str | None = None,
    request_id: str | None = None,
    then: AfterAuthentication | None = None,
) -> Actor | None:
    """The actor of a session cookie, or None when it is unknown, ended or expired.
    ``then(conn, actor)`` runs in the same transaction for a live session."""
    if not secret or len(secret) > 128:
        return None
    secret_hash = hash_session_secret(secret)
    async with db.control_tx(ControlContext.system_context()) as conn:
        cur = await conn.cursor(row_factory=dict_row).execute(_LOOKUP, [secret_hash])
        row = await cur.fetchone()
        if row is None:
            return None
        now = row["now"]
        reason = None
        if row["expires_at"] <= now:
            reason = "expired"
        elif row["last_seen_at"] + policy.idle <= now:
            reason = "idle"
        elif row["status"] != "active" or row["org_status"] != "active":
            reason = "user disabled"
        if reason:
            await conn.execute(
                "UPDATE lv_control.sessions SET ended_at = now(), ended_reason = %s "
                "WHERE id = %s AND ended_at IS NULL",
                [reason, row["id"]],
            )
            return None
        if now - row["last_seen_at"] >= TOUCH_EVERY:
            await conn.execute(
                "UPDATE lv_control.sessions SET last_seen_at = now() WHERE id = %s", [row["id"]]
            )
        needs_mfa = mfa_required(row)
        actor = Actor(
            kind=ActorKind.USER,
            user_id=row["user_id"],
            org_id=row["org_id"],
            is_system_admin=row["is_system_admin"],
            is_org_admin=row["is_org_admin"],
            session_id=str(row["id"]),
            source_address=source_address,
            user_agent=user_agent,
            request_id=request_id,
            mfa_pending=needs_mfa and row["mfa_verified_at"] is None,
            mfa_enrollment_required=needs_mfa and not row["has_totp"],
            must_change_password=row["password_must_change"],
            recently_authenticated=row["reauth_at"] is not None
            and now - row["reauth_at"] < REAUTH_WINDOW,
        )
        if then is not None:
            await then(conn, actor)
    return actor


async def end_session(db: RuntimeDatabase, secret: str, actor: Actor | None = None) -> None:
    async with db.control_tx(ControlContext.system_context()) as conn:
        cur = await conn.execute(
            "UPDATE lv_control.sessions SET ended_at = now(), ended_reason = 'logout' "
            "WHERE secret_hash = %s AND ended_at IS NULL RETURNING id, user_id, org_id",
            [hash_session_secret(secret)],
        )
        row = await cur.fetchone()
        if row is not None:
            await audit_control(
                conn,
                actor,
                "auth.logout",
                resource_type="session",
                resource_id=row[0],
                org_id=row[2],
                actor_id=str(row[1]),
            )


async def end_all_sessions(
    db: RuntimeDatabase,
    actor: Actor,
    *,
    user_id: uuid.UUID | None = None,
    keep_session: str | None = None,
    reason: str = "signed out everywhere",
) -> int:
    target = user_id or actor.user_id
    async with db.control_tx(ControlContext.for_actor(actor)) as conn:
        cur = await conn.execute(
            "UPDATE lv_control.sessions SET ended_at = now(), ended_reason = %s "
            "WHERE user_id = %s AND ended_at IS NULL AND id::text IS DISTINCT FROM %s",
            [reason, target, keep_session],
        )
        count = cur.rowcount
        await audit_control(
            conn,
            actor,
            "auth.sessions.end_all",
            resource_type="user",
            resource_id=target,
            org_id=actor.org_id,
            details={"sessions": count},
        )
    return count


async def list_sessions(db: RuntimeDatabase, actor: Actor) -> list[SessionInfo]:
    async with db.control_tx(ControlContext.for_actor(actor)) as conn:
        cur = await conn.cursor(row_factory=dict_row).execute(
            "SELECT id, user_id, created_at, last_seen_at, expires_at, source_address, user_agent "
            "FROM lv_control.sessions WHERE user_id = %s AND ended_at IS NULL "
            "AND expires_at > now() ORDER BY last_seen_at DESC",
            [actor.user_id],
        )
        rows = await cur.fetchall()
    return [SessionInfo(**r, current=str(r["id"]) == actor.session_id) for r in rows]
