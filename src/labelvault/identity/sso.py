"""Single sign-on with OpenID Connect: an organization's provider, the login round trip, and
just-in-time provisioning.

The protocol checks (PKCE S256, state, nonce, pinned issuer, audience, expiry, signing algorithm
allow-list, provider keys) are in :mod:`labelvault.auth.oidc`; this module stores and enforces:

* The provider's client secret is sealed (bound to its table, row and column) and never leaves
  this module except to authenticate to the provider's token endpoint.
* A pending login lives server-side in ``lv_control.oidc_pending``, keyed by ``sha256(state)``;
  its nonce and PKCE verifier are sealed, and it is bound to the browser that started it by a
  random secret whose hash only is stored (the caller puts the secret in an HttpOnly cookie). It
  is deleted before anything else is checked, so a callback is accepted at most once, and it
  expires after ten minutes.
* Local accounts are found by ``(issuer, subject)`` only. An unknown identity is provisioned
  just-in-time when the organization allows it, with a verified email only; it is never linked
  to an existing account with the same email (that would be account takeover), and an
  invitation-only organization refuses it (an administrator links identities explicitly).
* The provider's ``amr`` claim counts as our second factor only when it names several factors;
  otherwise the usual TOTP step follows.

Every callback, successful or not, is audited (``auth.sso.success`` / ``auth.sso.failed``) with a
short reason and never a token, code or secret.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
from psycopg import AsyncConnection
from psycopg.rows import dict_row

from labelvault.audit.record import audit_control
from labelvault.auth.oidc import (
    DEFAULT_ALLOWED_ALGS,
    PENDING_LOGIN_TTL_SECONDS,
    OidcIdentity,
    OidcProviderConfig,
    PendingLogin,
    SecretStr,
    begin_login,
    complete_login,
    fetch_metadata,
)
from labelvault.db.context import PROJECT_ROLES, ControlContext
from labelvault.db.runtime import RuntimeDatabase
from labelvault.identity.sessions import NewSession, SessionPolicy, create_session, mfa_required
from labelvault.identity.throttling import check_allowed, record_failure, sso_start_key
from labelvault.identity.users import clean_email
from labelvault.kernel.actor import Actor, ActorKind
from labelvault.kernel.errors import (
    ConflictError,
    InvalidInputError,
    LabelVaultError,
    NotFoundError,
    PermissionDeniedError,
    ThrottledError,
    UnauthenticatedError,
)
from labelvault.kernel.ids import new_id
from labelvault.tenancy.service import SecretSealer
from labelvault.tenancy.validation import clean_name

PENDING_TTL = dt.timedelta(seconds=PENDING_LOGIN_TTL_SECONDS)
MAX_STATE_LENGTH = 512
MAX_BINDING_LENGTH = 256
MAX_CLIENT_ID = 255
MAX_CLIENT_SECRET = 1024
MAX_SUBJECT = 255
MAX_NEXT = 512
MAX_LOGIN_HINT = 254
PAYLOAD_VERSION = 1

# RFC 8176 authentication method references, by kind of factor. "mfa" says it outright;
# otherwise methods of at least two different kinds make a multi-factor sign-in.
MFA_AMR = "mfa"
_AMR_KINDS: dict[str, str] = {
    "pwd": "knowledge",
    "pin": "knowledge",
    "kba": "knowledge",
    "otp": "possession",
    "hwk": "possession",
    "swk": "possession",
    "sms": "possession",
    "tel": "possession",
    "sc": "possession",
    "pop": "possession",
    "fpt": "inherence",
    "face": "inherence",
    "iris": "inherence",
    "retina": "inherence",
    "vbm": "inherence",
}


_SSO_ACTOR = Actor.system("sso")  # who provisions just-in-time accounts, in the audit trail
_OAUTH_ERROR = re.compile(r"^[a-z_]{1,64}$")


class SsoError(UnauthenticatedError):
    """A single sign-on attempt was refused; the message says why, without secrets."""

    code = "sso_failed"


def _secret_context(org_id: uuid.UUID) -> dict[str, str]:
    return {"table": "oidc_providers", "row": str(org_id), "column": "client_secret"}


def _pending_context(state_hash: str) -> dict[str, str]:
    return {"table": "oidc_pending", "row": state_hash, "column": "payload"}


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def amr_is_multi_factor(amr: tuple[str, ...] | list[str]) -> bool:
    """Whether the provider says the user signed in with more than one factor."""
    if MFA_AMR in amr:
        return True
    return len({_AMR_KINDS[m] for m in amr if m in _AMR_KINDS}) >= 2


def safe_next_path(value: object) -> str:
    """A local path to return to after sign-in; anything else (other sites included) is '/'."""
    if (
        not isinstance(value, str)
        or not value.startswith("/")
        or value.startswith("//")
        or len(value) > MAX_NEXT
        or "\\" in value
        or any(ord(c) < 0x21 or ord(c) == 0x7F for c in value)
    ):
        return "/"
    return value


# -- provider settings -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SsoSettings:
    """An organization's single sign-on settings, as administrators see them (no secret)."""

    org_id: uuid.UUID
    issuer: str
    client_id: str
    has_client_secret: bool
    allowed_algs: list[str]
    require_sso: bool
    jit: bool
    default_role: str | None
    default_project_id: uuid.UUID | None
    updated_at: dt.datetime


# A tenant's identity provider (and its administrators) could otherwise assert a platform-wide
# identity, and its "amr" claim would stand in for the platform's own second factor.
_NOT_FOR_SYSTEM_ADMINS = (
    "system administrators sign in with their password and second factor, never through an "
    "organization's identity provider"
)


def _require_org_admin(actor: Actor, org_id: uuid.UUID) -> None:
    if actor.is_system or actor.is_system_admin:
        return
    if actor.kind is not ActorKind.USER or actor.org_id != org_id:
        raise NotFoundError("organization not found")
    if not actor.is_org_admin:
        raise PermissionDeniedError("only organization administrators manage single sign-on")


def _require_recent_auth(actor: Actor) -> None:
    if actor.kind is ActorKind.USER and not actor.recently_authenticated:
        raise PermissionDeniedError("confirm your password first (re-authentication required)")


_SETTINGS = """
SELECT p.org_id, p.issuer, p.client_id, p.client_secret, p.allowed_algs, p.updated_at,
       o.require_sso, o.sso_jit, o.sso_default_role, o.sso_default_project, o.status AS org_status
  FROM lv_control.oidc_providers p
  JOIN lv_control.organizations o ON o.id = p.org_id
 WHERE p.org_id = %s
"""


async def _settings_row(conn: AsyncConnection[Any], org_id: uuid.UUID) -> dict[str, Any] | None:
    cur = await conn.cursor(row_factory=dict_row).execute(_SETTINGS, [org_id])
    return await cur.fetchone()


def _settings(row: dict[str, Any]) -> SsoSettings:
    return SsoSettings(
        org_id=row["org_id"],
        issuer=row["issuer"],
        client_id=row["client_id"],
        has_client_secret=bool(row["client_secret"]),
        allowed_algs=list(row["allowed_algs"]),
        require_sso=row["require_sso"],
        jit=row["sso_jit"],
        default_role=row["sso_default_role"],
        default_project_id=row["sso_default_project"],
        updated_at=row["updated_at"],
    )


def _provider_config(
    row: dict[str, Any], sealer: SecretSealer, *, secret: str | None = None
) -> OidcProviderConfig:
    if secret is None:
        secret = sealer.unseal(
            bytes(row["client_secret"]), **_secret_context(row["org_id"])
        ).decode("utf-8")
    return OidcProviderConfig(
        issuer=row["issuer"],
        client_id=row["client_id"],
        client_secret=SecretStr(secret),
        allowed_algs=tuple(row["allowed_algs"]),
    )


async def configure_provider(
    db: RuntimeDatabase,
    sealer: SecretSealer,
    actor: Actor,
    org_id: uuid.UUID,
    *,
    issuer: str,
    client_id: str,
    client_secret: str | None,
    allowed_algs: list[str] | tuple[str, ...] = DEFAULT_ALLOWED_ALGS,
    require_sso: bool = False,
    jit: bool = False,
    default_role: str | None = None,
    default_project_id: uuid.UUID | None = None,
) -> SsoSettings:
    """Create or replace an organization's provider. ``client_secret=None`` keeps the stored
    secret, allowed only while the issuer and client id stay the same (a new provider never
    receives the old provider's secret)."""
    _require_org_admin(actor, org_id)
    _require_recent_auth(actor)
    if not isinstance(client_id, str) or not 0 < len(client_id) <= MAX_CLIENT_ID:
        raise InvalidInputError(
            f"client_id must be 1 to {MAX_CLIENT_ID} characters", field="client_id"
        )
    if client_secret is not None and (
        not isinstance(client_secret, str) or not 0 < len(client_secret) <= MAX_CLIENT_SECRET
    ):
        raise InvalidInputError(
            f"client_secret must be 1 to {MAX_CLIENT_SECRET} characters", field="client_secret"
        )
    algs = tuple(dict.fromkeys(allowed_algs))
    # validates issuer, client id and algorithms (never "none", never HMAC)
    OidcProviderConfig(
        issuer=issuer,
        client_id=client_id,
        client_secret=SecretStr(client_secret or "kept"),
        allowed_algs=algs,
    )
    if default_role is not None and default_role not in PROJECT_ROLES:
        raise InvalidInputError(
            f"default_role must be one of {', '.join(sorted(PROJECT_ROLES))}",
            field="default_role",
        )
    if (default_role is None) != (default_project_id is None):
        raise InvalidInputError(
            "default_role and default_project_id go together", field="default_project_id"
        )
    async with db.control_tx(ControlContext.for_actor(actor)) as conn:
        cur = await conn.execute(
            "SELECT status FROM lv_control.organizations WHERE id = %s FOR UPDATE", [org_id]
        )
        if await cur.fetchone() is None:
            raise NotFoundError("organization not found")
        if default_project_id is not None:
            cur = await conn.execute(
                "SELECT 1 FROM lv_control.projects WHERE id = %s AND org_id = %s "
                "AND status = 'active'",
                [default_project_id, org_id],
            )
            if await cur.fetchone() is None:
                raise NotFoundError("project not found", field="default_project_id")
        existing = await _settings_row(conn, org_id)
        if client_secret is not None:
            sealed = sealer.seal(client_secret.encode("utf-8"), **_secret_context(org_id))
        elif (
            existing is not None
            and existing["issuer"] == issuer
            and existing["client_id"] == client_id
        ):
            sealed = bytes(existing["client_secret"])
        else:
            raise InvalidInputError(
                "client_secret is required for a new provider or client", field="client_secret"
            )
        await conn.execute(
            "INSERT INTO lv_control.oidc_providers (org_id, issuer, client_id, client_secret, "
            "allowed_algs) VALUES (%s, %s, %s, %s, %s) ON CONFLICT (org_id) DO UPDATE SET "
            "issuer = excluded.issuer, client_id = excluded.client_id, "
            "client_secret = excluded.client_secret, allowed_algs = excluded.allowed_algs, "
            "updated_at = now()",
            [org_id, issuer, client_id, sealed, list(algs)],
        )
        await conn.execute(
            "UPDATE lv_control.organizations SET require_sso = %s, sso_jit = %s, "
            "sso_default_role = %s, sso_default_project = %s WHERE id = %s",
            [require_sso, jit, default_role, default_project_id, org_id],
        )
        if existing is not None and existing["issuer"] != issuer:
            # logins started against the previous provider cannot complete any more
            await conn.execute("DELETE FROM lv_control.oidc_pending WHERE org_id = %s", [org_id])
        row = await _settings_row(conn, org_id)
        assert row is not None
        await audit_control(
            conn,
            actor,
            "sso.configure",
            resource_type="organization",
            resource_id=org_id,
            org_id=org_id,
            details={
                "issuer": issuer,
                "client_id": client_id,
                "allowed_algs": ",".join(algs),
                "secret_changed": client_secret is not None,
                "require_sso": require_sso,
                "jit": jit,
                "default_role": default_role,
                "default_project_id": str(default_project_id) if default_project_id else None,
            },
        )
    return _settings(row)


async def get_provider_settings(
    db: RuntimeDatabase, actor: Actor, org_id: uuid.UUID
) -> SsoSettings:
    """The organization's settings without the secret (only ``has_client_secret``)."""
    _require_org_admin(actor, org_id)
    async with db.control_tx(ControlContext.for_actor(actor)) as conn:
        row = await _settings_row(conn, org_id)
    if row is None:
        raise NotFoundError("single sign-on is not configured for this organization")
    return _settings(row)


async def delete_provider(db: RuntimeDatabase, actor: Actor, org_id: uuid.UUID) -> None:
    """Remove the provider; password sign-in is allowed again and provisioning stops.
    Linked identities stay, so configuring the same issuer again restores them."""
    _require_org_admin(actor, org_id)
    _require_recent_auth(actor)
    async with db.control_tx(ControlContext.for_actor(actor)) as conn:
        cur = await conn.execute(
            "DELETE FROM lv_control.oidc_providers WHERE org_id = %s RETURNING issuer", [org_id]
        )
        row = await cur.fetchone()
        if row is None:
            raise NotFoundError("single sign-on is not configured for this organization")
        await conn.execute(
            "UPDATE lv_control.organizations SET require_sso = false, sso_jit = false, "
            "sso_default_role = NULL, sso_default_project = NULL WHERE id = %s",
            [org_id],
        )
        await conn.execute("DELETE FROM lv_control.oidc_pending WHERE org_id = %s", [org_id])
        await audit_control(
            conn,
            actor,
            "sso.delete",
            resource_type="organization",
            resource_id=org_id,
            org_id=org_id,
            details={"issuer": row[0]},
        )


async def link_identity(
    db: RuntimeDatabase,
    actor: Actor,
    org_id: uuid.UUID,
    *,
    user_id: uuid.UUID,
    subject: str,
) -> None:
    """An administrator links the provider's ``subject`` to an account of the organization:
    how invited users of an invitation-only organization sign in (never by email)."""
    _require_org_admin(actor, org_id)
    _require_recent_auth(actor)
    if not isinstance(subject, str) or not 0 < len(subject) <= MAX_SUBJECT:
        raise InvalidInputError(f"subject must be 1 to {MAX_SUBJECT} characters", field="subject")
    async with db.control_tx(ControlContext.for_actor(actor)) as conn:
        row = await _settings_row(conn, org_id)
        if row is None:
            raise NotFoundError("single sign-on is not configured for this organization")
        cur = await conn.execute(
            "SELECT is_system_admin FROM lv_control.users WHERE id = %s AND org_id = %s",
            [user_id, org_id],
        )
        found = await cur.fetchone()
        if found is None:
            raise NotFoundError("user not found", field="user_id")
        if found[0]:  # an organization's provider must never vouch for a platform administrator
            raise PermissionDeniedError(_NOT_FOR_SYSTEM_ADMINS, field="user_id")
        try:
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO lv_control.oidc_identities (issuer, subject, user_id, org_id) "
                    "VALUES (%s, %s, %s, %s)",
                    [row["issuer"], subject, user_id, org_id],
                )
        except psycopg.errors.UniqueViolation:
            raise ConflictError(
                "this identity is already linked to an account", field="subject"
            ) from None
        await audit_control(
            conn,
            actor,
            "sso.identity.link",
            resource_type="user",
            resource_id=user_id,
            org_id=org_id,
            details={"issuer": row["issuer"]},
        )


# -- the login round trip ----------------------------------------------------------------------


async def _active_provider(db: RuntimeDatabase, org_id: uuid.UUID) -> dict[str, Any] | None:
    async with db.control_tx(ControlContext.system_context()) as conn:
        row = await _settings_row(conn, org_id)
    if row is None or row["org_status"] != "active":
        return None
    return row


async def begin_sso(
    db: RuntimeDatabase,
    sealer: SecretSealer,
    org_id: uuid.UUID,
    redirect_uri: str,
    http: httpx.AsyncClient,
    *,
    next_path: str = "/",
    login_hint: str | None = None,
    source_address: str | None = None,
) -> tuple[str, str]:
    """Start a login: returns the provider URL to redirect to and the browser-binding secret
    (for an HttpOnly cookie). Nothing secret goes to the browser except that binding. Starts
    are throttled per source address (429 past :data:`SSO_START_POLICY`)."""
    row = await _active_provider(db, org_id)
    if row is None:
        raise NotFoundError("single sign-on is not available for this organization")
    async with db.control_tx(ControlContext.system_context()) as conn:
        key = sso_start_key(org_id, source_address)
        try:
            await check_allowed(conn, key)
        except ThrottledError as exc:
            raise ThrottledError(
                "too many sign-ins started from this address; try again in "
                f"{exc.retry_after} seconds",
                retry_after=exc.retry_after,
            ) from None
        await record_failure(conn, key)  # every start counts, finished or not
    config = _provider_config(row, sealer)
    metadata = await fetch_metadata(config, http)  # issuer must equal the configured one
    hint = login_hint if login_hint and len(login_hint) <= MAX_LOGIN_HINT else None
    url, pending = begin_login(config, metadata, redirect_uri, login_hint=hint)
    binding = secrets.token_urlsafe(32)
    state_hash = _sha256(pending.state)
    payload = json.dumps(
        {
            "v": PAYLOAD_VERSION,
            "issuer": pending.issuer,
            "nonce": pending.nonce,
            "code_verifier": pending.code_verifier,
            "redirect_uri": pending.redirect_uri,
            "created_at": pending.created_at,
            "next": safe_next_path(next_path),
        }
    ).encode("utf-8")
    sealed = sealer.seal(payload, **_pending_context(state_hash))
    async with db.control_tx(ControlContext.system_context()) as conn:
        await conn.execute(
            "DELETE FROM lv_control.oidc_pending WHERE created_at < now() - %s", [PENDING_TTL]
        )
        await conn.execute(
            "INSERT INTO lv_control.oidc_pending (state_hash, org_id, binding_hash, payload) "
            "VALUES (%s, %s, %s, %s)",
            [state_hash, org_id, _sha256(binding), sealed],
        )
    return url, binding


@dataclass(frozen=True)
class SsoSession(NewSession):
    """A session from single sign-on, with the local path the login was started from."""

    next_path: str = "/"
    provisioned: bool = False

    def __repr__(self) -> str:
        return f"SsoSession(session_id={self.session_id}, mfa_pending={self.mfa_pending})"


@dataclass
class _Attempt:
    org_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None
    who: dict[str, Any] = field(default_factory=dict)


async def complete_sso(
    db: RuntimeDatabase,
    sealer: SecretSealer,
    *,
    state: str | None,
    code: str | None,
    iss: str | None,
    binding_secret: str | None,
    http: httpx.AsyncClient,
    policy: SessionPolicy,
    source_address: str | None,
    user_agent: str | None,
    request_id: str | None = None,
    provider_error: str | None = None,
) -> SsoSession:
    """Handle the provider's redirect back; returns a new session or raises ``SsoError`` /
    ``OidcError`` (both 401). The failure is audited in its own transaction."""
    attempt = _Attempt(
        who={"source_address": source_address, "user_agent": user_agent, "request_id": request_id}
    )
    try:
        return await _complete(
            db,
            sealer,
            attempt,
            state=state,
            code=code,
            iss=iss,
            binding_secret=binding_secret,
            http=http,
            policy=policy,
            provider_error=provider_error,
        )
    except LabelVaultError as exc:
        reason = exc.message if isinstance(exc, UnauthenticatedError) else exc.code
        async with db.control_tx(ControlContext.system_context()) as conn:
            await audit_control(
                conn,
                None,
                "auth.sso.failed",
                outcome="failure",
                org_id=attempt.org_id,
                actor_id=str(attempt.user_id) if attempt.user_id else None,
                details={"reason": reason[:200]},
                **attempt.who,
            )
        if isinstance(exc, UnauthenticatedError):
            raise
        raise SsoError("single sign-on failed; please start again") from exc


async def _complete(
    db: RuntimeDatabase,
    sealer: SecretSealer,
    attempt: _Attempt,
    *,
    state: str | None,
    code: str | None,
    iss: str | None,
    binding_secret: str | None,
    http: httpx.AsyncClient,
    policy: SessionPolicy,
    provider_error: str | None,
) -> SsoSession:
    if not state or not isinstance(state, str) or len(state) > MAX_STATE_LENGTH:
        raise SsoError("the sign-in response has no valid state; please start again")
    state_hash = _sha256(state)
    # single use: the pending login is gone before anything else is looked at
    async with db.control_tx(ControlContext.system_context()) as conn:
        cur = await conn.cursor(row_factory=dict_row).execute(
            "DELETE FROM lv_control.oidc_pending WHERE state_hash = %s "
            "RETURNING org_id, binding_hash, payload, now() - created_at AS age",
            [state_hash],
        )
        pending_row = await cur.fetchone()
    if pending_row is None:
        raise SsoError("unknown or already used sign-in attempt; please start again")
    attempt.org_id = pending_row["org_id"]
    binding_ok = (
        isinstance(binding_secret, str)
        and 0 < len(binding_secret) <= MAX_BINDING_LENGTH
        and hmac.compare_digest(_sha256(binding_secret), pending_row["binding_hash"])
    )
    if not binding_ok:
        raise SsoError("this sign-in was started in another browser; please start again")
    if pending_row["age"] > PENDING_TTL:
        raise SsoError("the sign-in attempt has expired; please start again")
    if provider_error is not None:
        shown = provider_error if _OAUTH_ERROR.match(provider_error) else "error"
        raise SsoError(f"the identity provider refused the sign-in ({shown})")
    payload = json.loads(
        sealer.unseal(bytes(pending_row["payload"]), **_pending_context(state_hash))
    )
    row = await _active_provider(db, pending_row["org_id"])
    if row is None:
        raise SsoError("single sign-on is not available for this organization")
    config = _provider_config(row, sealer)
    pending = PendingLogin(
        issuer=payload["issuer"],
        state=state,  # its hash matched the stored one
        nonce=payload["nonce"],
        code_verifier=payload["code_verifier"],
        redirect_uri=payload["redirect_uri"],
        created_at=float(payload["created_at"]),
    )
    metadata = await fetch_metadata(config, http)
    identity = await complete_login(
        config,
        metadata,
        pending,
        returned_state=state,
        code=code or "",
        http=http,
        returned_iss=iss,
        now=time.time(),
    )
    return await _sign_in(db, attempt, row, identity, policy, safe_next_path(payload.get("next")))


_USER = """
SELECT u.id, u.org_id, u.status, u.is_system_admin, u.is_org_admin, u.password_must_change,
       coalesce(o.status, 'active') AS org_status,
       coalesce(o.require_mfa, false) AS org_requires_mfa,
       EXISTS (SELECT 1 FROM lv_control.mfa_totp t
                WHERE t.user_id = u.id AND t.confirmed_at IS NOT NULL) AS has_totp
  FROM lv_control.users u LEFT JOIN lv_control.organizations o ON o.id = u.org_id
 WHERE u.id = %s
"""


async def _user_row(conn: AsyncConnection[Any], user_id: uuid.UUID) -> dict[str, Any]:
    cur = await conn.cursor(row_factory=dict_row).execute(_USER, [user_id])
    row = await cur.fetchone()
    if row is None:
        raise SsoError("the account of this identity no longer exists")
    return row


async def _provision(
    conn: AsyncConnection[Any],
    provider: dict[str, Any],
    identity: OidcIdentity,
) -> uuid.UUID:
    """Create the account of an unknown identity (just-in-time), or refuse."""
    org_id: uuid.UUID = provider["org_id"]
    if not provider["sso_jit"]:
        raise SsoError(
            "no account is linked to this identity and the organization admits invited users "
            "only; ask an administrator"
        )
    if not identity.email or not identity.email_verified:
        raise SsoError("the identity provider did not send a verified email address")
    try:
        email = clean_email(identity.email)
    except InvalidInputError:
        raise SsoError("the identity provider sent an unusable email address") from None
    cur = await conn.execute(
        "SELECT 1 FROM lv_control.users WHERE lower(email) = lower(%s)", [email]
    )
    if await cur.fetchone() is not None:
        raise SsoError(
            "an account with this email address already exists and is not linked to this "
            "identity; accounts are never linked by email, ask an administrator"
        )
    try:
        name = clean_name(identity.name or "", field="display_name", max_length=200)
    except InvalidInputError:
        name = ""
    user_id = new_id()
    try:
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO lv_control.users (id, org_id, email, display_name) "
                "VALUES (%s, %s, %s, %s)",
                [user_id, org_id, email, name],
            )
            await conn.execute(
                "INSERT INTO lv_control.oidc_identities (issuer, subject, user_id, org_id) "
                "VALUES (%s, %s, %s, %s)",
                [identity.issuer, identity.subject, user_id, org_id],
            )
    except psycopg.errors.UniqueViolation:
        # a concurrent sign-in of the same identity or email won the race
        raise SsoError("this account is being created by another sign-in; try again") from None
    role, project_id = provider["sso_default_role"], provider["sso_default_project"]
    await audit_control(
        conn,
        _SSO_ACTOR,
        "user.create",
        resource_type="user",
        resource_id=user_id,
        org_id=org_id,
        details={"via": "sso_jit", "issuer": identity.issuer},
    )
    if role is not None and project_id is not None:
        cur = await conn.execute(
            "INSERT INTO lv_control.memberships (org_id, project_id, user_id, role) "
            "SELECT org_id, id, %s, %s FROM lv_control.projects "
            "WHERE id = %s AND org_id = %s AND status = 'active'",
            [user_id, role, project_id, org_id],
        )
        if cur.rowcount == 1:
            await audit_control(
                conn,
                _SSO_ACTOR,
                "member.set",
                resource_type="membership",
                resource_id=user_id,
                project_id=project_id,
                org_id=org_id,
                details={"role": role, "via": "sso_jit"},
            )
    return user_id


async def _sign_in(
    db: RuntimeDatabase,
    attempt: _Attempt,
    provider: dict[str, Any],
    identity: OidcIdentity,
    policy: SessionPolicy,
    next_path: str,
) -> SsoSession:
    org_id: uuid.UUID = provider["org_id"]
    async with db.control_tx(ControlContext.system_context()) as conn:
        cur = await conn.execute(
            "SELECT user_id, org_id FROM lv_control.oidc_identities "
            "WHERE issuer = %s AND subject = %s",
            [identity.issuer, identity.subject],
        )
        linked = await cur.fetchone()
        provisioned = False
        if linked is None:
            user_id = await _provision(conn, provider, identity)
            provisioned = True
        elif linked[1] != org_id:
            attempt.user_id = linked[0]
            raise SsoError("this identity belongs to another organization")
        else:
            user_id = linked[0]
        attempt.user_id = user_id
        user = await _user_row(conn, user_id)
        if user["org_id"] != org_id:
            raise SsoError("this identity belongs to another organization")
        if user["status"] != "active" or user["org_status"] != "active":
            raise SsoError("this account is disabled; contact your administrator")
        if user["is_system_admin"]:
            raise SsoError(_NOT_FOR_SYSTEM_ADMINS)
        provider_mfa = amr_is_multi_factor(identity.amr)
        needs_mfa = mfa_required(user) and not provider_mfa
        secret, session_id = await create_session(
            conn,
            user_id=user_id,
            org_id=org_id,
            policy=policy,
            mfa_verified=not needs_mfa,
            source_address=attempt.who.get("source_address"),
            user_agent=attempt.who.get("user_agent"),
        )
        await audit_control(
            conn,
            None,
            "auth.sso.success",
            resource_type="session",
            resource_id=session_id,
            actor_id=str(user_id),
            org_id=org_id,
            session_ref=str(session_id),
            details={
                "issuer": identity.issuer,
                "provisioned": provisioned,
                "provider_mfa": provider_mfa,
                "mfa_pending": needs_mfa,
            },
            **attempt.who,
        )
    return SsoSession(
        secret=secret,
        session_id=session_id,
        user_id=user_id,
        mfa_pending=needs_mfa,
        mfa_enrollment_required=needs_mfa and not user["has_totp"],
        must_change_password=user["password_must_change"],
        next_path=next_path,
        provisioned=provisioned,
    )
