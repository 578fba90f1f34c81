"""Password sign-in, the second-factor step, re-authentication and password changes.

Unknown account, wrong password and an account without a password all get the same answer after
the same work (a dummy argon2 verification), so sign-in reveals nothing about which accounts
exist. Every attempt, success or failure, is audited; failures feed the throttle.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from labelvault.audit.events import Outcome
from labelvault.audit.record import audit_control
from labelvault.auth import (
    check_password_policy,
    dummy_verify,
    hash_password,
    match_recovery_code,
    needs_rehash,
    verify_password,
    verify_totp,
)
from labelvault.db.context import ControlContext
from labelvault.db.runtime import RuntimeDatabase
from labelvault.identity import throttling
from labelvault.identity.sessions import (
    NewSession,
    SessionPolicy,
    create_session,
    mfa_required,
)
from labelvault.kernel.actor import Actor
from labelvault.kernel.errors import (
    InvalidInputError,
    PermissionDeniedError,
    ThrottledError,
    UnauthenticatedError,
)
from labelvault.tenancy.service import SecretSealer

BAD_CREDENTIALS = "email or password is incorrect"
MAX_PASSWORD_INPUT = 1024


def totp_context(user_id: uuid.UUID) -> dict[str, str]:
    return {"table": "mfa_totp", "row": str(user_id), "column": "secret"}


async def _user_by_email(conn: AsyncConnection[Any], email: str) -> dict[str, Any] | None:
    cur = await conn.cursor(row_factory=dict_row).execute(
        """
        SELECT u.*, coalesce(o.status, 'active') AS org_status,
               coalesce(o.require_sso, false) AS org_requires_sso,
               coalesce(o.require_mfa, false) AS org_requires_mfa,
               EXISTS (SELECT 1 FROM lv_control.mfa_totp t
                        WHERE t.user_id = u.id AND t.confirmed_at IS NOT NULL) AS has_totp
          FROM lv_control.users u LEFT JOIN lv_control.organizations o ON o.id = u.org_id
         WHERE lower(u.email) = lower(%s)
        """,
        [email],
    )
    return await cur.fetchone()


async def deny(
    db: RuntimeDatabase,
    actor: Actor | None,
    action: str,
    *,
    keys: tuple[str, ...] = (),
    outcome: Outcome = "failure",
    **fields: Any,
) -> None:
    """Record a refused attempt (and feed the throttle) in its own committed transaction.

    The refused action itself writes nothing, so its record cannot share its transaction: it
    is committed here, before the caller raises.
    """
    async with db.control_tx(ControlContext.system_context()) as conn:
        if keys:
            await throttling.record_failure(conn, *keys)
        await audit_control(conn, actor, action, outcome=outcome, **fields)


async def _throttled(db: RuntimeDatabase, keys: tuple[str, ...]) -> ThrottledError | None:
    async with db.control_tx(ControlContext.system_context()) as conn:
        try:
            await throttling.check_allowed(conn, *keys)
        except ThrottledError as exc:
            return exc
    return None


async def login_with_password(
    db: RuntimeDatabase,
    *,
    email: str,
    password: str,
    policy: SessionPolicy,
    source_address: str | None,
    user_agent: str | None,
    request_id: str | None = None,
) -> NewSession:
    if not isinstance(email, str) or not isinstance(password, str) or not email:
        raise UnauthenticatedError(BAD_CREDENTIALS)
    email = email.strip()[:254]
    keys = (throttling.account_key(email), throttling.address_key(source_address))
    who: dict[str, Any] = {
        "source_address": source_address,
        "user_agent": user_agent,
        "request_id": request_id,
    }
    throttled = await _throttled(db, keys)
    if throttled is not None:
        await deny(db, None, "auth.login.throttled", outcome="denied", **who)
        raise throttled
    async with db.control_tx(ControlContext.system_context()) as conn:
        user = await _user_by_email(conn, email)
    password = password[: MAX_PASSWORD_INPUT + 1]
    ok = False
    if user is not None and user["password_hash"] and len(password) <= MAX_PASSWORD_INPUT:
        ok = await asyncio.to_thread(verify_password, user["password_hash"], password)
    else:
        await asyncio.to_thread(dummy_verify, password)
    if not ok or user is None:
        await deny(
            db,
            None,
            "auth.login.failed",
            keys=keys,
            actor_id=str(user["id"]) if user else None,
            org_id=user["org_id"] if user else None,
            details={"reason": "bad_credentials"},
            **who,
        )
        raise UnauthenticatedError(BAD_CREDENTIALS)
    refusal = None
    if user["status"] != "active" or user["org_status"] != "active":
        refusal = ("account_disabled", "this account is disabled; contact your administrator")
    elif user["org_requires_sso"] and not user["is_system_admin"]:
        refusal = (
            "sso_required",
            "your organization requires single sign-on: use its sign-in button",
        )
    if refusal:
        await deny(
            db,
            None,
            "auth.login.refused",
            outcome="denied",
            actor_id=str(user["id"]),
            org_id=user["org_id"],
            details={"reason": refusal[0]},
            **who,
        )
        raise UnauthenticatedError(refusal[1])
    async with db.control_tx(ControlContext.system_context()) as conn:
        if needs_rehash(user["password_hash"]):
            await conn.execute(
                "UPDATE lv_control.users SET password_hash = %s WHERE id = %s",
                [await asyncio.to_thread(hash_password, password), user["id"]],
            )
        needs_mfa = mfa_required(user)
        secret, session_id = await create_session(
            conn,
            user_id=user["id"],
            org_id=user["org_id"],
            policy=policy,
            mfa_verified=not needs_mfa,
            source_address=source_address,
            user_agent=user_agent,
        )
        await audit_control(
            conn,
            None,
            "auth.login.password",
            resource_type="session",
            resource_id=session_id,
            actor_id=str(user["id"]),
            org_id=user["org_id"],
            session_ref=str(session_id),
            details={"mfa_pending": needs_mfa},
            **who,
        )
    return NewSession(
        secret,
        session_id,
        user["id"],
        needs_mfa,
        needs_mfa and not user["has_totp"],
        user["password_must_change"],
    )


async def verify_second_factor(
    db: RuntimeDatabase,
    sealer: SecretSealer,
    actor: Actor,
    *,
    code: str,
    policy: SessionPolicy,
) -> NewSession:
    """TOTP or a recovery code for a session waiting for its second factor; rotates the session."""
    if actor.user_id is None or actor.session_id is None or not actor.mfa_pending:
        raise InvalidInputError("no second factor is pending for this session")
    if actor.mfa_enrollment_required:
        raise PermissionDeniedError("set up an authenticator app first")
    code = (code or "").strip()[:64]
    keys = (throttling.mfa_key(actor.user_id), throttling.address_key(actor.source_address))
    throttled = await _throttled(db, keys)
    if throttled is not None:
        await deny(db, actor, "auth.mfa.throttled", outcome="denied")
        raise throttled
    async with db.control_tx(ControlContext.system_context()) as conn:
        dcur = await conn.cursor(row_factory=dict_row).execute(
            "SELECT secret, last_step FROM lv_control.mfa_totp WHERE user_id = %s "
            "AND confirmed_at IS NOT NULL",
            [actor.user_id],
        )
        totp = await dcur.fetchone()
        cur = await conn.execute(
            "SELECT slot, code_hash FROM lv_control.recovery_codes WHERE user_id = %s "
            "ORDER BY slot",
            [actor.user_id],
        )
        slots = list(await cur.fetchall())
    method = None
    step = None
    if totp is not None and code.isdigit():
        secret = sealer.unseal(bytes(totp["secret"]), **totp_context(actor.user_id)).decode()
        step = verify_totp(secret, code, last_used_step=totp["last_step"])
        method = "totp" if step is not None else None
    used_slot = None
    if method is None and slots and not code.isdigit():
        index = await asyncio.to_thread(match_recovery_code, code, [h for _, h in slots])
        if index is not None:
            used_slot, method = slots[index][0], "recovery_code"
    if method is None:
        await deny(db, actor, "auth.mfa.failed", keys=keys)
        raise UnauthenticatedError("the code is not valid")
    new = None
    async with db.control_tx(ControlContext.system_context()) as conn:
        if step is not None:
            # the replay guard, atomically: a code's time step is accepted once
            cur = await conn.execute(
                "UPDATE lv_control.mfa_totp SET last_step = %s WHERE user_id = %s "
                "AND (last_step IS NULL OR last_step < %s)",
                [step, actor.user_id, step],
            )
            fresh = cur.rowcount == 1
        else:
            cur = await conn.execute(
                "UPDATE lv_control.recovery_codes SET code_hash = NULL, used_at = now() "
                "WHERE user_id = %s AND slot = %s AND code_hash IS NOT NULL",
                [actor.user_id, used_slot],
            )
            fresh = cur.rowcount == 1
        if fresh:
            new = await _rotate_verified(conn, actor, policy)
            await audit_control(
                conn,
                actor,
                "auth.mfa.success",
                resource_type="session",
                resource_id=new.session_id,
                details={"method": method},
            )
    if new is None:
        await deny(db, actor, "auth.mfa.replay", keys=keys, outcome="denied")
        raise UnauthenticatedError("the code is not valid")
    return new


async def _rotate_verified(
    conn: AsyncConnection[Any], actor: Actor, policy: SessionPolicy
) -> NewSession:
    """End the pending session and open a fresh one (a new id after each authentication)."""
    cur = await conn.execute(
        "UPDATE lv_control.sessions SET ended_at = now(), ended_reason = 'rotated' "
        "WHERE id = %s AND ended_at IS NULL RETURNING user_id",
        [uuid.UUID(str(actor.session_id))],
    )
    if cur.rowcount != 1:
        raise UnauthenticatedError("the session has ended; sign in again")
    assert actor.user_id is not None
    secret, session_id = await create_session(
        conn,
        user_id=actor.user_id,
        org_id=actor.org_id,
        policy=policy,
        mfa_verified=True,
        source_address=actor.source_address,
        user_agent=actor.user_agent,
    )
    return NewSession(secret, session_id, actor.user_id, False, False, actor.must_change_password)


async def reauthenticate(db: RuntimeDatabase, actor: Actor, *, password: str) -> None:
    """Fresh proof of the password, needed for sensitive settings for the next 30 minutes."""
    if actor.user_id is None or actor.session_id is None:
        raise UnauthenticatedError("sign in with a session to do this")
    keys = (throttling.mfa_key(actor.user_id), throttling.address_key(actor.source_address))
    throttled = await _throttled(db, keys)
    if throttled is not None:
        raise throttled
    async with db.control_tx(ControlContext.system_context()) as conn:
        cur = await conn.execute(
            "SELECT password_hash FROM lv_control.users WHERE id = %s", [actor.user_id]
        )
        row = await cur.fetchone()
    ok = bool(row and row[0]) and await asyncio.to_thread(
        verify_password, row[0] if row else "", (password or "")[:MAX_PASSWORD_INPUT]
    )
    if not ok:
        await deny(db, actor, "auth.reauth.failed", keys=keys)
        raise UnauthenticatedError("the password is incorrect")
    async with db.control_tx(ControlContext.system_context()) as conn:
        await conn.execute(
            "UPDATE lv_control.sessions SET reauth_at = now() WHERE id = %s",
            [uuid.UUID(str(actor.session_id))],
        )
        await audit_control(conn, actor, "auth.reauth")


async def change_password(
    db: RuntimeDatabase,
    actor: Actor,
    *,
    current: str,
    new: str,
) -> int:
    """Change one's own password; every other session of the user ends. Returns how many."""
    if actor.user_id is None:
        raise UnauthenticatedError("authentication required")
    async with db.control_tx(ControlContext.system_context()) as conn:
        dcur = await conn.cursor(row_factory=dict_row).execute(
            "SELECT email, display_name, password_hash FROM lv_control.users WHERE id = %s",
            [actor.user_id],
        )
        row = await dcur.fetchone()
    if (
        row is None
        or not row["password_hash"]
        or not await asyncio.to_thread(
            verify_password, row["password_hash"], (current or "")[:MAX_PASSWORD_INPUT]
        )
    ):
        raise UnauthenticatedError("the current password is incorrect")
    if new == current:
        raise InvalidInputError(
            "the new password must differ from the current one", field="password"
        )
    check_password_policy(new, user_inputs=(row["email"], row["display_name"]))
    hashed = await asyncio.to_thread(hash_password, new)
    async with db.control_tx(ControlContext.system_context()) as conn:
        await conn.execute(
            "UPDATE lv_control.users SET password_hash = %s, password_changed_at = now(), "
            "password_must_change = false WHERE id = %s",
            [hashed, actor.user_id],
        )
        cur = await conn.execute(
            "UPDATE lv_control.sessions SET ended_at = now(), ended_reason = 'password changed' "
            "WHERE user_id = %s AND ended_at IS NULL AND id::text IS DISTINCT FROM %s",
            [actor.user_id, actor.session_id],
        )
        ended = cur.rowcount
        await audit_control(
            conn,
            actor,
            "auth.password.change",
            resource_type="user",
            resource_id=actor.user_id,
            details={"sessions_ended": ended},
        )
    return ended
