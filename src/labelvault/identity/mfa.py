"""Enrolling and resetting the second factor (TOTP plus single-use recovery codes)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

from labelvault.audit.record import audit_control
from labelvault.auth import (
    generate_recovery_codes,
    hash_recovery_code,
    new_totp_secret,
    provisioning_uri,
    verify_totp,
)
from labelvault.db.context import ControlContext
from labelvault.db.runtime import RuntimeDatabase
from labelvault.identity.login import deny, totp_context
from labelvault.kernel.actor import Actor
from labelvault.kernel.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from labelvault.tenancy.service import SecretSealer


@dataclass(frozen=True)
class TotpEnrollment:
    secret: str
    uri: str

    def __repr__(self) -> str:
        return "TotpEnrollment(secret=**********)"


def _require_fresh(actor: Actor) -> None:
    if actor.user_id is None or actor.session_id is None:
        raise UnauthenticatedError("sign in with a session to change your second factor")
    # enrolment right after sign-in is part of sign-in; changing an existing factor needs re-auth
    if not (actor.mfa_enrollment_required or actor.recently_authenticated):
        raise PermissionDeniedError("confirm your password first (re-authentication required)")


async def begin_totp(
    db: RuntimeDatabase, sealer: SecretSealer, actor: Actor, *, account: str
) -> TotpEnrollment:
    _require_fresh(actor)
    assert actor.user_id is not None
    secret = new_totp_secret()
    sealed = sealer.seal(secret.encode(), **totp_context(actor.user_id))
    async with db.control_tx(ControlContext.for_actor(actor)) as conn:
        cur = await conn.execute(
            "SELECT confirmed_at FROM lv_control.mfa_totp WHERE user_id = %s", [actor.user_id]
        )
        row = await cur.fetchone()
        if row is not None and row[0] is not None:
            raise ConflictError("an authenticator is already set up; reset it first")
        await conn.execute(
            "INSERT INTO lv_control.mfa_totp (user_id, org_id, secret) VALUES (%s, %s, %s) "
            "ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, last_step = NULL",
            [actor.user_id, actor.org_id, sealed],
        )
        await audit_control(
            conn, actor, "auth.mfa.enroll.begin", resource_type="user", resource_id=actor.user_id
        )
    return TotpEnrollment(secret, provisioning_uri(secret, account))


async def confirm_totp(
    db: RuntimeDatabase, sealer: SecretSealer, actor: Actor, *, code: str
) -> list[str]:
    """Confirm the authenticator with a first code; returns recovery codes, shown once."""
    _require_fresh(actor)
    assert actor.user_id is not None
    async with db.control_tx(ControlContext.for_actor(actor)) as conn:
        cur = await conn.execute(
            "SELECT secret, confirmed_at FROM lv_control.mfa_totp WHERE user_id = %s FOR UPDATE",
            [actor.user_id],
        )
        row = await cur.fetchone()
        if row is None or row[1] is not None:
            raise InvalidInputError("no authenticator set-up is in progress")
        secret = sealer.unseal(bytes(row[0]), **totp_context(actor.user_id)).decode()
        step = verify_totp(secret, (code or "").strip(), last_used_step=None)
        if step is not None:
            await conn.execute(
                "UPDATE lv_control.mfa_totp SET confirmed_at = now(), last_step = %s "
                "WHERE user_id = %s",
                [step, actor.user_id],
            )
    if step is None:
        await deny(db, actor, "auth.mfa.enroll.failed")
        raise InvalidInputError("the code is not valid", field="code")
    codes = generate_recovery_codes()
    hashes = await asyncio.gather(*(asyncio.to_thread(hash_recovery_code, c) for c in codes))
    async with db.control_tx(ControlContext.for_actor(actor)) as conn:
        await conn.execute(
            "DELETE FROM lv_control.recovery_codes WHERE user_id = %s", [actor.user_id]
        )
        async with conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO lv_control.recovery_codes (user_id, org_id, slot, code_hash) "
                "VALUES (%s, %s, %s, %s)",
                [(actor.user_id, actor.org_id, i, h) for i, h in enumerate(hashes)],
            )
        # the enrolment itself is the second factor for the session that did it
        await conn.execute(
            "UPDATE lv_control.sessions SET mfa_verified_at = now() WHERE id = %s",
            [uuid.UUID(str(actor.session_id))],
        )
        await audit_control(
            conn, actor, "auth.mfa.enroll", resource_type="user", resource_id=actor.user_id
        )
    return codes


async def reset_mfa(db: RuntimeDatabase, actor: Actor, user_id: uuid.UUID) -> None:
    """An administrator removes a user's second factor (lost device); their sessions end."""
    async with db.control_tx(ControlContext.for_actor(actor)) as conn:
        cur = await conn.execute(
            "SELECT org_id, is_system_admin FROM lv_control.users WHERE id = %s", [user_id]
        )
        row = await cur.fetchone()
        if row is None:
            raise NotFoundError("user not found")
        if not (
            actor.is_system_admin
            or actor.is_system
            or (actor.is_org_admin and actor.org_id == row[0])
        ):
            raise NotFoundError("user not found")
        if row[1] and not (actor.is_system_admin or actor.is_system):
            raise PermissionDeniedError("only system administrators manage system administrators")
    async with db.control_tx(ControlContext.system_context()) as conn:
        await conn.execute("DELETE FROM lv_control.mfa_totp WHERE user_id = %s", [user_id])
        await conn.execute("DELETE FROM lv_control.recovery_codes WHERE user_id = %s", [user_id])
        await conn.execute(
            "UPDATE lv_control.sessions SET ended_at = now(), ended_reason = 'mfa reset' "
            "WHERE user_id = %s AND ended_at IS NULL",
            [user_id],
        )
        await audit_control(
            conn, actor, "auth.mfa.reset", resource_type="user", resource_id=user_id, org_id=row[0]
        )
