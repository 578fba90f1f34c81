"""User accounts: creation, lookup, disabling, passwords and the access review."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import psycopg
from psycopg.rows import dict_row

from labelvault.audit.record import audit_control
from labelvault.auth import check_password_policy, hash_password
from labelvault.db.context import ControlContext
from labelvault.db.runtime import RuntimeDatabase
from labelvault.identity.models import User
from labelvault.kernel.actor import Actor
from labelvault.kernel.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
)
from labelvault.kernel.ids import new_id, parse_id
from labelvault.tenancy.validation import clean_name

MAX_EMAIL = 254


def clean_email(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidInputError("email must be a string", field="email")
    email = value.strip()
    local, sep, domain = email.rpartition("@")
    if (
        not sep
        or not local
        or not domain
        or len(email) > MAX_EMAIL
        or ("." not in domain and domain != "localhost")
        or any(c.isspace() or ord(c) < 32 for c in email)
    ):
        raise InvalidInputError("email is not a valid address", field="email")
    return email


def user_from_row(row: dict[str, Any]) -> User:
    return User(
        row["id"],
        row["org_id"],
        row["email"],
        row["display_name"],
        row["status"],
        row["is_system_admin"],
        row["is_org_admin"],
        row["password_must_change"],
        row["created_at"],
    )


def one_time_password() -> str:
    """A generated password for first sign-in (must be changed then); 120 random bits."""
    return "-".join(secrets.token_urlsafe(5) for _ in range(4))


def _require_user_admin(actor: Actor, org_id: uuid.UUID | None) -> None:
    if actor.is_system or actor.is_system_admin:
        return
    if org_id is None or actor.org_id != org_id:
        raise NotFoundError("organization not found")
    if not actor.is_org_admin:
        raise PermissionDeniedError("only organization administrators manage users")


async def create_user(
    db: RuntimeDatabase,
    actor: Actor,
    *,
    email: str,
    org_id: uuid.UUID | None,
    display_name: str = "",
    password: str | None = None,
    is_org_admin: bool = False,
    is_system_admin: bool = False,
    must_change: bool = False,
) -> User:
    """Create an account. Without a password the user signs in through SSO or an invitation."""
    _require_user_admin(actor, org_id)
    if is_system_admin and not (actor.is_system or actor.is_system_admin):
        raise PermissionDeniedError("only system administrators create system administrators")
    email = clean_email(email)
    name = clean_name(display_name, field="display_name", max_length=200) if display_name else ""
    password_hash = None
    if password is not None:
        check_password_policy(password, user_inputs=(email, name))
        password_hash = hash_password(password)
    user_id = new_id()
    async with db.control_tx(ControlContext.for_actor(actor)) as conn:
        try:
            async with conn.transaction():
                cur = await conn.cursor(row_factory=dict_row).execute(
                    "INSERT INTO lv_control.users (id, org_id, email, display_name, password_hash, "
                    "password_changed_at, password_must_change, is_system_admin, is_org_admin) "
                    "VALUES (%s, %s, %s, %s, %s, CASE WHEN %s::text IS NULL THEN NULL ELSE now() "
                    "END, %s, %s, %s) RETURNING *",
                    [
                        user_id,
                        org_id,
                        email,
                        name,
                        password_hash,
                        password_hash,
                        must_change,
                        is_system_admin,
                        is_org_admin,
                    ],
                )
                row = await cur.fetchone()
        except psycopg.errors.UniqueViolation:
            raise ConflictError("a user with this email already exists", field="email") from None
        except psycopg.errors.ForeignKeyViolation:
            raise NotFoundError("organization not found") from None
        assert row is not None
        await audit_control(
            conn,
            actor,
            "user.create",
            resource_type="user",
            resource_id=user_id,
            org_id=org_id,
            details={"org_admin": is_org_admin, "system_admin": is_system_admin},
        )
    return user_from_row(row)


async def get_user(db: RuntimeDatabase, actor: Actor, user_id: str | uuid.UUID) -> User:
    uid = parse_id(user_id, what="user")
    async with db.control_tx(ControlContext.for_actor(actor)) as conn:
        cur = await conn.cursor(row_factory=dict_row).execute(
            "SELECT * FROM lv_control.users WHERE id = %s", [uid]
        )
        row = await cur.fetchone()
    if row is None:
        raise NotFoundError("user not found")
    return user_from_row(row)


async def find_user_by_email(db: RuntimeDatabase, actor: Actor, email: str) -> User:
    async with db.control_tx(ControlContext.for_actor(actor)) as conn:
        cur = await conn.cursor(row_factory=dict_row).execute(
            "SELECT * FROM lv_control.users WHERE lower(email) = lower(%s)", [email]
        )
        row = await cur.fetchone()
    if row is None:
        raise NotFoundError("user not found")
    return user_from_row(row)


async def list_users(db: RuntimeDatabase, actor: Actor, org_id: uuid.UUID) -> list[User]:
    _require_user_admin(actor, org_id)
    async with db.control_tx(ControlContext.for_actor(actor)) as conn:
        cur = await conn.cursor(row_factory=dict_row).execute(
            "SELECT * FROM lv_control.users WHERE org_id = %s ORDER BY lower(email)", [org_id]
        )
        return [user_from_row(r) for r in await cur.fetchall()]


async def set_user_status(
    db: RuntimeDatabase, actor: Actor, user_id: uuid.UUID, *, disabled: bool
) -> User:
    """Disable (ending every session and revoking every token at once) or re-enable a user."""
    async with db.control_tx(ControlContext.for_actor(actor)) as conn:
        cur = await conn.cursor(row_factory=dict_row).execute(
            "SELECT * FROM lv_control.users WHERE id = %s FOR UPDATE", [user_id]
        )
        row = await cur.fetchone()
        if row is None:
            raise NotFoundError("user not found")
        _require_user_admin(actor, row["org_id"])
        if row["is_system_admin"] and not (actor.is_system or actor.is_system_admin):
            raise PermissionDeniedError("only system administrators manage system administrators")
        status = "disabled" if disabled else "active"
        cur = await conn.cursor(row_factory=dict_row).execute(
            "UPDATE lv_control.users SET status = %s WHERE id = %s RETURNING *", [status, user_id]
        )
        row = await cur.fetchone()
        assert row is not None
        if disabled:
            await conn.execute(
                "UPDATE lv_control.sessions SET ended_at = now(), ended_reason = 'user disabled' "
                "WHERE user_id = %s AND ended_at IS NULL",
                [user_id],
            )
            await conn.execute(
                "UPDATE lv_control.api_tokens SET revoked_at = now(), revoked_by = %s "
                "WHERE user_id = %s AND revoked_at IS NULL",
                [actor.user_id, user_id],
            )
        await audit_control(
            conn,
            actor,
            "user.disable" if disabled else "user.enable",
            resource_type="user",
            resource_id=user_id,
            org_id=row["org_id"],
        )
    return user_from_row(row)


async def access_review(
    db: RuntimeDatabase, actor: Actor, org_id: uuid.UUID
) -> list[dict[str, Any]]:
    """Who can reach which project with what role, last activity and MFA status (CC6.2/6.3)."""
    _require_user_admin(actor, org_id)
    async with db.control_tx(ControlContext.for_actor(actor)) as conn:
        cur = await conn.cursor(row_factory=dict_row).execute(
            """
            SELECT u.id AS user_id, u.email, u.status, u.is_org_admin,
                   p.id AS project_id, p.name AS project_name, m.role,
                   (SELECT max(s.last_seen_at) FROM lv_control.sessions s
                     WHERE s.user_id = u.id) AS last_session,
                   (SELECT max(t.last_used_at) FROM lv_control.api_tokens t
                     WHERE t.user_id = u.id) AS last_token_use,
                   EXISTS (SELECT 1 FROM lv_control.oidc_identities i
                     WHERE i.user_id = u.id) AS sso_linked
              FROM lv_control.users u
              LEFT JOIN lv_control.memberships m ON m.user_id = u.id
              LEFT JOIN lv_control.projects p ON p.id = m.project_id AND p.status = 'active'
             WHERE u.org_id = %s
             ORDER BY lower(u.email), p.name
            """,
            [org_id],
        )
        rows = await cur.fetchall()
        async with db.control_tx(ControlContext.system_context()) as sys_conn:
            cur2 = await sys_conn.execute(
                "SELECT user_id FROM lv_control.mfa_totp WHERE confirmed_at IS NOT NULL "
                "AND user_id = ANY(%s)",
                [[r["user_id"] for r in rows]],
            )
            with_mfa = {r[0] for r in await cur2.fetchall()}
        await audit_control(
            conn,
            actor,
            "access.review",
            resource_type="organization",
            resource_id=org_id,
            org_id=org_id,
        )
    for r in rows:
        r["mfa"] = r["user_id"] in with_mfa
    return rows


async def lift_sign_in_lock(db: RuntimeDatabase, actor: Actor, user: User) -> None:
    """An administrator lifts the throttle lock of an account after repeated failures."""
    from labelvault.identity import throttling

    _require_user_admin(actor, user.org_id)
    async with db.control_tx(ControlContext.system_context()) as conn:
        await throttling.lift_lock(conn, throttling.account_key(user.email), actor.user_id)
        await throttling.lift_lock(conn, throttling.mfa_key(user.id), actor.user_id)
        await audit_control(
            conn,
            actor,
            "auth.lock.lift",
            resource_type="user",
            resource_id=user.id,
            org_id=user.org_id,
        )
