"""Single sign-on end to end: the real server over HTTPS, the real test OIDC provider over HTTP.

The browser is played by hand with httpx: start (302 to the provider, binding cookie set) ->
the provider's /authorize (302 back to our callback with code, state and iss) -> the callback,
called with the same client (so with the binding cookie).
"""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pytest
import structlog
from tests.support.oidc_provider import OidcTestProvider, run_oidc_provider
from tests.support.platform import (
    SYSTEM,
    ServerThread,
    make_org,
    make_project,
    make_user,
    sign_in,
    unique,
)

from labelvault import identity
from labelvault.db.context import ControlContext
from labelvault.identity import sso
from labelvault.kernel.actor import Actor, ActorKind
from labelvault.kernel.errors import PermissionDeniedError
from labelvault.logs import configure_logging
from labelvault.platform import Platform

CALLBACK = "/api/v1/auth/sso/callback"
JSON = {"accept": "application/json"}
SSO_COOKIE = "__Host-lv_sso"
SESSION_COOKIE = "__Host-lv_session"


@pytest.fixture(scope="module")
def provider(server: ServerThread) -> Iterator[OidcTestProvider]:
    with run_oidc_provider(redirect_uris=(server.url + CALLBACK,)) as p:
        yield p


@pytest.fixture(autouse=True)
def _good_provider(provider: OidcTestProvider) -> Iterator[None]:
    provider.reset_knobs()
    yield
    provider.reset_knobs()


async def configure(
    platform: Platform, org_id: uuid.UUID, provider: OidcTestProvider, **kw: Any
) -> sso.SsoSettings:
    return await sso.configure_provider(
        platform.db,
        platform.sealer,
        SYSTEM,
        org_id,
        issuer=provider.issuer,
        client_id=provider.client_id,
        client_secret=provider.client_secret,
        **kw,
    )


def idp_user(provider: OidcTestProvider, email: str | None = None) -> tuple[str, str]:
    sub = unique("sub")
    email = email or f"{unique('sso')}@example.test"
    provider.add_user(sub, email, "SSO Person")
    return sub, email


async def start(client: httpx.AsyncClient, org_id: uuid.UUID, sub: str) -> str:
    """Start a login; returns the provider's authorization URL."""
    r = await client.get(
        f"/api/v1/auth/sso/{org_id}/start", params={"next": "/", "login_hint": sub}
    )
    assert r.status_code == 302, r.text
    assert SSO_COOKIE in client.cookies
    set_cookie = r.headers["set-cookie"]
    assert "HttpOnly" in set_cookie and "Secure" in set_cookie
    assert "samesite=lax" in set_cookie.lower()
    return r.headers["location"]


async def authorize(location: str) -> str:
    """The provider's side: returns our callback URL with code, state and iss."""
    async with httpx.AsyncClient() as idp:
        r = await idp.get(location)
    assert r.status_code == 302, r.text
    return r.headers["location"]


async def callback_url(client: httpx.AsyncClient, org_id: uuid.UUID, sub: str) -> str:
    return await authorize(await start(client, org_id, sub))


async def sso_login(
    client: httpx.AsyncClient, org_id: uuid.UUID, sub: str, **headers: str
) -> httpx.Response:
    url = await callback_url(client, org_id, sub)
    return await client.get(url, headers=headers or JSON)


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


async def link(
    client: httpx.AsyncClient, csrf: str, org_id: uuid.UUID, user_id: uuid.UUID, sub: str
) -> httpx.Response:
    """An org admin (signed in on ``client``) links the provider's ``sub`` to an account."""
    return await client.post(
        f"/api/v1/orgs/{org_id}/sso/identities",
        headers={"x-csrf-token": csrf},
        json={"user_id": str(user_id), "subject": sub},
    )


async def assert_no_session(client: httpx.AsyncClient, response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert SESSION_COOKIE not in response.headers.get("set-cookie", "")
    r = await client.get("/api/v1/auth/session")
    assert r.status_code == 401


async def user_exists(platform: Platform, email: str) -> bool:
    async with platform.db.control_tx(ControlContext.system_context()) as conn:
        cur = await conn.execute(
            "SELECT 1 FROM lv_control.users WHERE lower(email) = lower(%s)", [email]
        )
        return await cur.fetchone() is not None


async def audit_bodies(platform: Platform, org_id: uuid.UUID) -> list[str]:
    from labelvault.audit.sealer import seal_control

    await seal_control(platform.db)
    async with platform.db.control_tx(ControlContext.system_context()) as conn:
        cur = await conn.execute(
            "SELECT convert_from(body, 'UTF8') FROM lv_control.audit_events "
            "WHERE org_id = %s ORDER BY seq",
            [org_id],
        )
        return [r[0] for r in await cur.fetchall()]


def patch_claims(
    provider: OidcTestProvider, monkeypatch: pytest.MonkeyPatch, **claims: Any
) -> None:
    original: Callable[[Any], dict[str, Any]] = provider.id_token_claims

    def claims_with_changes(grant: Any) -> dict[str, Any]:
        return {**original(grant), **claims}

    monkeypatch.setattr(provider, "id_token_claims", claims_with_changes)


# -- the happy path ----------------------------------------------------------------------------


async def test_jit_login_with_default_role_gives_a_working_session(
    platform: Platform, server: ServerThread, provider: OidcTestProvider
) -> None:
    org = await make_org(platform)
    project = await make_project(platform, org.id)
    await configure(
        platform,
        org.id,
        provider,
        jit=True,
        default_role="annotator",
        default_project_id=project.id,
    )
    sub, email = idp_user(provider)
    async with server.client() as client:
        r = await sso_login(client, org.id, sub)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["mfa_required"] is False and body["csrf_token"]
        assert "__Host-lv_session=" in r.headers["set-cookie"]
        assert SSO_COOKIE not in client.cookies  # the binding cookie is cleared
        r = await client.get("/api/v1/auth/session")
        assert r.status_code == 200, r.text
        user = r.json()["user"]
        assert user["email"] == email and user["org_id"] == str(org.id)
        assert user["is_org_admin"] is False
    members = await identity.list_memberships(platform.db, SYSTEM, project_id=project.id)
    assert [(str(m.user_id), m.role) for m in members] == [(user["id"], "annotator")]
    async with platform.db.control_tx(ControlContext.system_context()) as conn:
        cur = await conn.execute(
            "SELECT issuer, subject, password_hash FROM lv_control.oidc_identities i "
            "JOIN lv_control.users u ON u.id = i.user_id WHERE u.id = %s",
            [uuid.UUID(user["id"])],
        )
        assert await cur.fetchall() == [(provider.issuer, sub, None)]

    # a second login reuses the identity (same account, no second user)
    async with server.client() as client:
        r = await sso_login(client, org.id, sub)
        assert r.status_code == 200, r.text
        r = await client.get("/api/v1/auth/session")
        assert r.json()["user"]["id"] == user["id"]
    bodies = await audit_bodies(platform, org.id)
    successes = [b for b in bodies if '"auth.sso.success"' in b]
    assert len(successes) == 2
    assert '"provisioned":true' in successes[0] and '"provisioned":false' in successes[1]
    assert any('"user.create"' in b and "sso_jit" in b for b in bodies)


async def test_browser_callback_redirects_to_next_and_next_cannot_leave_the_site(
    platform: Platform, server: ServerThread, provider: OidcTestProvider
) -> None:
    org = await make_org(platform)
    await configure(platform, org.id, provider, jit=True)
    sub, _ = idp_user(provider)
    for next_path, expected in (("/projects?x=1", "/projects?x=1"), ("//evil.test/", "/")):
        async with server.client() as client:
            r = await client.get(
                f"/api/v1/auth/sso/{org.id}/start", params={"next": next_path, "login_hint": sub}
            )
            assert r.status_code == 302
            r = await client.get(await authorize(r.headers["location"]))
            assert r.status_code == 303, r.text
            assert r.headers["location"] == expected
            assert (await client.get("/api/v1/auth/session")).status_code == 200


async def test_start_is_404_for_unknown_orgs_and_orgs_without_sso(
    platform: Platform, server: ServerThread
) -> None:
    org = await make_org(platform)
    async with server.client() as client:
        for org_id in (str(org.id), str(uuid.uuid4()), "not-an-id"):
            r = await client.get(f"/api/v1/auth/sso/{org_id}/start")
            assert r.status_code == 404, r.text
            assert SSO_COOKIE not in client.cookies


# -- identities are keyed by (issuer, subject); never linked by email -------------------------


async def test_starts_are_throttled_per_source_address(
    platform: Platform, server: ServerThread, provider: OidcTestProvider
) -> None:
    """An unauthenticated start stores a pending login and calls the provider: past the
    allowance (as if this address had started 1,000 in the last minutes) it is a 429."""
    from labelvault.identity.throttling import SSO_START_POLICY, lift_lock, sso_start_key

    org = await make_org(platform)
    await configure(platform, org.id, provider, jit=True)
    key = sso_start_key(org.id, "127.0.0.1")
    async with platform.db.control_tx(ControlContext.system_context()) as conn:
        await conn.execute(
            "INSERT INTO lv_control.auth_failures (key, at) "
            "SELECT %s, now() FROM generate_series(1, %s)",
            [key, SSO_START_POLICY.free_failures + 8],  # back-off of 2**8 s after the last
        )
    try:
        async with server.client() as client:
            r = await client.get(f"/api/v1/auth/sso/{org.id}/start")
            assert r.status_code == 429, r.text
            assert int(r.headers["retry-after"]) >= 1
            assert "too many sign-ins started" in r.json()["detail"]
            assert SSO_COOKIE not in r.cookies
        other = await make_org(platform)  # another organization's sign-in stays open
        await configure(platform, other.id, provider, jit=True)
        async with server.client() as client:
            assert (await client.get(f"/api/v1/auth/sso/{other.id}/start")).status_code == 302
    finally:
        async with platform.db.control_tx(ControlContext.system_context()) as conn:
            await lift_lock(conn, key, None)
    async with server.client() as client:  # lifted: starts go through again
        r = await client.get(f"/api/v1/auth/sso/{org.id}/start")
        assert r.status_code == 302, r.text


async def test_same_email_from_another_issuer_is_refused(
    platform: Platform, server: ServerThread, provider: OidcTestProvider
) -> None:
    org_a, org_b = await make_org(platform), await make_org(platform)
    await configure(platform, org_a.id, provider, jit=True)
    sub, email = idp_user(provider)
    async with server.client() as client:
        assert (await sso_login(client, org_a.id, sub)).status_code == 200
    with run_oidc_provider(redirect_uris=(server.url + CALLBACK,)) as other:
        await configure(platform, org_b.id, other, jit=True)
        other_sub, _ = idp_user(other, email=email)  # same email, another issuer
        async with server.client() as client:
            r = await sso_login(client, org_b.id, other_sub)
            await assert_no_session(client, r)
            assert "never linked by email" in r.json()["detail"]
    bodies = await audit_bodies(platform, org_b.id)
    assert any('"auth.sso.failed"' in b and "never linked by email" in b for b in bodies)


async def test_existing_password_account_is_not_taken_over_by_email(
    platform: Platform, server: ServerThread, provider: OidcTestProvider
) -> None:
    org = await make_org(platform)
    victim = await make_user(platform, org.id)
    await configure(platform, org.id, provider, jit=True)
    sub, _ = idp_user(provider, email=victim.email.upper())
    async with server.client() as client:
        r = await sso_login(client, org.id, sub)
        await assert_no_session(client, r)
        assert "already exists" in r.json()["detail"]


async def test_identity_of_another_organization_is_refused(
    platform: Platform, server: ServerThread, provider: OidcTestProvider
) -> None:
    org_a, org_b = await make_org(platform), await make_org(platform)
    await configure(platform, org_a.id, provider, jit=True)
    await configure(platform, org_b.id, provider, jit=True)  # the same issuer
    sub, _ = idp_user(provider)
    async with server.client() as client:
        assert (await sso_login(client, org_a.id, sub)).status_code == 200
    async with server.client() as client:
        r = await sso_login(client, org_b.id, sub)
        await assert_no_session(client, r)
        assert "another organization" in r.json()["detail"]


async def test_unverified_email_is_not_provisioned(
    platform: Platform,
    server: ServerThread,
    provider: OidcTestProvider,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    org = await make_org(platform)
    await configure(platform, org.id, provider, jit=True)
    sub, email = idp_user(provider)
    patch_claims(provider, monkeypatch, email_verified=False)
    async with server.client() as client:
        r = await sso_login(client, org.id, sub)
        await assert_no_session(client, r)
        assert "verified email" in r.json()["detail"]
    assert not await user_exists(platform, email)


async def test_invitation_only_refuses_unknown_until_an_admin_links_the_identity(
    platform: Platform, server: ServerThread, provider: OidcTestProvider
) -> None:
    org = await make_org(platform)
    await configure(platform, org.id, provider, jit=False)
    sub, email = idp_user(provider)
    async with server.client() as client:
        r = await sso_login(client, org.id, sub)
        await assert_no_session(client, r)
        assert "invited users only" in r.json()["detail"]
    assert not await user_exists(platform, email)

    admin = await make_user(platform, org.id, org_admin=True)
    invited = await make_user(platform, org.id)
    async with server.client() as client:
        csrf = await sign_in(client, admin)
        r = await link(client, csrf, org.id, invited.id, sub)
        assert r.status_code == 204, r.text
        r = await link(client, csrf, org.id, admin.id, sub)
        assert r.status_code == 409, r.text
    async with server.client() as client:
        assert (await sso_login(client, org.id, sub)).status_code == 200
        r = await client.get("/api/v1/auth/session")
        assert r.json()["user"]["id"] == str(invited.id)


async def test_system_administrators_never_sign_in_through_an_org_provider(
    platform: Platform, server: ServerThread, provider: OidcTestProvider
) -> None:
    """An organization's provider (and its administrators, who choose what it asserts) must not
    vouch for a platform administrator, even one filed under that organization."""
    org = await make_org(platform)
    await configure(platform, org.id, provider, jit=False)
    admin = await make_user(platform, org.id, org_admin=True)
    root = await make_user(platform, org.id, system_admin=True)
    sub, _ = idp_user(provider)
    async with server.client() as client:
        csrf = await sign_in(client, admin)
        r = await link(client, csrf, org.id, root.id, sub)
        assert r.status_code == 403, r.text
        assert "system administrators" in r.json()["detail"]
    # a link made anyway (before this rule, or by hand in the database) does not sign anyone in
    async with platform.db.control_tx(ControlContext.system_context()) as conn:
        await conn.execute(
            "INSERT INTO lv_control.oidc_identities (issuer, subject, user_id, org_id) "
            "VALUES (%s, %s, %s, %s)",
            [provider.issuer, sub, root.id, org.id],
        )
    async with server.client() as client:
        r = await sso_login(client, org.id, sub)
        await assert_no_session(client, r)
        assert "system administrators" in r.json()["detail"]
    assert any('"auth.sso.failed"' in body for body in await audit_bodies(platform, org.id))


async def test_disabled_user_is_refused(
    platform: Platform, server: ServerThread, provider: OidcTestProvider
) -> None:
    org = await make_org(platform)
    await configure(platform, org.id, provider, jit=True)
    sub, email = idp_user(provider)
    async with server.client() as client:
        assert (await sso_login(client, org.id, sub)).status_code == 200
    user = await identity.find_user_by_email(platform.db, SYSTEM, email)
    await identity.set_user_status(platform.db, SYSTEM, user.id, disabled=True)
    async with server.client() as client:
        r = await sso_login(client, org.id, sub)
        await assert_no_session(client, r)
        assert "disabled" in r.json()["detail"]


# -- MFA: the provider's amr counts only when it names several factors ------------------------


def test_amr_multi_factor_rules() -> None:
    assert sso.amr_is_multi_factor(["mfa"])
    assert sso.amr_is_multi_factor(["pwd", "otp"])
    assert sso.amr_is_multi_factor(["hwk", "fpt"])
    assert not sso.amr_is_multi_factor(["pwd"])
    assert not sso.amr_is_multi_factor(["otp"])
    assert not sso.amr_is_multi_factor(["hwk", "swk"])  # two of one kind
    assert not sso.amr_is_multi_factor([])


@pytest.mark.parametrize(("amr", "mfa_pending"), [(["pwd"], True), (["pwd", "otp"], False)])
async def test_org_admin_needs_a_second_factor_unless_the_provider_did_mfa(
    platform: Platform,
    server: ServerThread,
    provider: OidcTestProvider,
    monkeypatch: pytest.MonkeyPatch,
    amr: list[str],
    mfa_pending: bool,
) -> None:
    org = await make_org(platform)
    admin = await make_user(platform, org.id, org_admin=True)
    await configure(platform, org.id, provider, jit=False)
    sub, _ = idp_user(provider)
    await sso.link_identity(platform.db, SYSTEM, org.id, user_id=admin.id, subject=sub)
    patch_claims(provider, monkeypatch, amr=amr)
    async with server.client() as client:
        r = await sso_login(client, org.id, sub)
        assert r.status_code == 200, r.text
        assert r.json()["mfa_required"] is mfa_pending
        assert r.json()["mfa_enrollment_required"] is mfa_pending
        r = await client.get("/api/v1/auth/session")
        assert r.json()["mfa_pending"] is mfa_pending
        r = await client.get(f"/api/v1/orgs/{org.id}")
        assert r.status_code == (401 if mfa_pending else 200), r.text


# -- every protocol violation: 401 and no session ----------------------------------------------


@pytest.mark.parametrize(
    ("knob", "value"),
    [
        ("wrong_issuer", True),
        ("wrong_audience", True),
        ("bad_signature", True),
        ("alg_none", True),
        ("expired", True),
        ("nonce_override", "not-the-nonce-we-sent"),
    ],
)
async def test_bad_id_tokens_are_rejected(
    platform: Platform,
    server: ServerThread,
    provider: OidcTestProvider,
    knob: str,
    value: object,
) -> None:
    org = await make_org(platform)
    await configure(platform, org.id, provider, jit=True)
    sub, email = idp_user(provider)
    setattr(provider, knob, value)
    async with server.client() as client:
        r = await sso_login(client, org.id, sub)
        await assert_no_session(client, r)
        assert r.json()["code"] == "oidc_failed"
        assert SSO_COOKIE not in client.cookies
    assert not await user_exists(platform, email)
    bodies = await audit_bodies(platform, org.id)
    assert any('"auth.sso.failed"' in b for b in bodies)


async def test_replayed_callback_is_rejected(
    platform: Platform, server: ServerThread, provider: OidcTestProvider
) -> None:
    org = await make_org(platform)
    await configure(platform, org.id, provider, jit=True)
    sub, _ = idp_user(provider)
    async with server.client() as client:
        url = await callback_url(client, org.id, sub)
        binding = client.cookies[SSO_COOKIE]
        assert (await client.get(url, headers=JSON)).status_code == 200
    async with server.client() as client:
        client.cookies.set(SSO_COOKIE, binding, domain="localhost")
        r = await client.get(url, headers=JSON)
        await assert_no_session(client, r)
        assert "already used" in r.json()["detail"]


async def test_forged_state_is_rejected(
    platform: Platform, server: ServerThread, provider: OidcTestProvider
) -> None:
    org = await make_org(platform)
    await configure(platform, org.id, provider, jit=True)
    sub, _ = idp_user(provider)
    async with server.client() as client:
        url = await callback_url(client, org.id, sub)
        for forged in (with_query(url, state="forged-" + "x" * 40), with_query(url, state="")):
            r = await client.get(forged, headers=JSON)
            await assert_no_session(client, r)


@pytest.mark.parametrize("cookie", ["missing", "other"])
async def test_callback_needs_the_browser_that_started_the_login(
    platform: Platform, server: ServerThread, provider: OidcTestProvider, cookie: str
) -> None:
    org = await make_org(platform)
    await configure(platform, org.id, provider, jit=True)
    sub, email = idp_user(provider)
    async with server.client() as victim:
        url = await callback_url(victim, org.id, sub)
    async with server.client() as attacker:
        if cookie == "other":
            await start(attacker, org.id, sub)  # a binding cookie of its own login
        r = await attacker.get(url, headers=JSON)
        await assert_no_session(attacker, r)
        assert "another browser" in r.json()["detail"]
    assert not await user_exists(platform, email)


async def test_mismatched_iss_in_the_callback_is_rejected(
    platform: Platform, server: ServerThread, provider: OidcTestProvider
) -> None:
    org = await make_org(platform)
    await configure(platform, org.id, provider, jit=True)
    sub, _ = idp_user(provider)
    async with server.client() as client:
        url = await callback_url(client, org.id, sub)
        r = await client.get(with_query(url, iss="https://evil.example"), headers=JSON)
        await assert_no_session(client, r)


async def test_discovery_issuer_mismatch_is_rejected(
    platform: Platform, server: ServerThread, provider: OidcTestProvider
) -> None:
    org = await make_org(platform)
    await configure(platform, org.id, provider, jit=True)
    sub, email = idp_user(provider)
    provider.discovery_issuer_override = "https://evil.example"
    async with server.client() as client:
        r = await client.get(f"/api/v1/auth/sso/{org.id}/start", params={"login_hint": sub})
        await assert_no_session(client, r)
        assert SSO_COOKIE not in client.cookies
    # and when the discovery document changes between start and callback
    provider.reset_knobs()
    async with server.client() as client:
        url = await callback_url(client, org.id, sub)
        provider.discovery_issuer_override = provider.issuer + "/"
        r = await client.get(url, headers=JSON)
        await assert_no_session(client, r)
        assert "issuer" in r.json()["detail"]
    assert not await user_exists(platform, email)


async def test_provider_error_response_is_rejected(
    platform: Platform, server: ServerThread, provider: OidcTestProvider
) -> None:
    org = await make_org(platform)
    await configure(platform, org.id, provider, jit=True)
    sub, _ = idp_user(provider)
    async with server.client() as client:
        url = await callback_url(client, org.id, sub)
        parts = urlsplit(url)
        state = dict(parse_qsl(parts.query))["state"]
        denied = urlunsplit(
            parts._replace(query=urlencode({"state": state, "error": "access_denied"}))
        )
        r = await client.get(denied, headers=JSON)
        await assert_no_session(client, r)
        assert "access_denied" in r.json()["detail"]
        # the pending login is used up as well
        r = await client.get(url, headers=JSON)
        await assert_no_session(client, r)


# -- organization settings ---------------------------------------------------------------------


async def test_require_sso_blocks_password_login(
    platform: Platform, server: ServerThread, provider: OidcTestProvider
) -> None:
    org = await make_org(platform)
    user = await make_user(platform, org.id)
    async with server.client() as client:
        await sign_in(client, user)  # works before
    await configure(platform, org.id, provider, jit=True, require_sso=True)
    async with server.client() as client:
        r = await client.post(
            "/api/v1/auth/login", json={"email": user.email, "password": user.password}
        )
        assert r.status_code == 401
        assert "single sign-on" in r.json()["detail"]
        assert SESSION_COOKIE not in r.headers.get("set-cookie", "")
    # removing the provider lifts the requirement
    await sso.delete_provider(platform.db, SYSTEM, org.id)
    async with server.client() as client:
        await sign_in(client, user)


async def test_settings_api_never_reveals_the_client_secret(
    platform: Platform, server: ServerThread, provider: OidcTestProvider
) -> None:
    org = await make_org(platform)
    project = await make_project(platform, org.id)
    admin = await make_user(platform, org.id, org_admin=True)
    secret = provider.client_secret
    buffer = io.StringIO()
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    saved_structlog = structlog.get_config()
    configure_logging("debug", stream=buffer)
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    responses: list[httpx.Response] = []
    try:
        async with server.client() as client:
            h = {"x-csrf-token": await sign_in(client, admin)}
            body = {
                "issuer": provider.issuer,
                "client_id": provider.client_id,
                "client_secret": secret,
                "allowed_algs": ["RS256"],
                "jit": True,
                "default_role": "reviewer",
                "default_project_id": str(project.id),
            }
            r = await client.put(f"/api/v1/orgs/{org.id}/sso", json=body, headers=h)
            assert r.status_code == 200, r.text
            responses.append(r)
            assert r.json()["has_client_secret"] is True
            assert r.json()["redirect_uri"] == server.url + CALLBACK
            assert "client_secret" not in r.json()
            r = await client.get(f"/api/v1/orgs/{org.id}/sso")
            assert r.status_code == 200
            responses.append(r)
            assert r.json()["default_role"] == "reviewer"
            # without a secret: kept for the same issuer and client ...
            kept = {k: v for k, v in body.items() if k != "client_secret"}
            r = await client.put(f"/api/v1/orgs/{org.id}/sso", json=kept, headers=h)
            assert r.status_code == 200, r.text
            responses.append(r)
            # ... but never handed to another issuer
            moved = {**kept, "issuer": "https://idp.example.test"}
            r = await client.put(f"/api/v1/orgs/{org.id}/sso", json=moved, headers=h)
            assert r.status_code == 422, r.text
            responses.append(r)
            bad = {**body, "allowed_algs": ["none"]}
            r = await client.put(f"/api/v1/orgs/{org.id}/sso", json=bad, headers=h)
            assert r.status_code == 422, r.text
            responses.append(r)
            bad = {**body, "allowed_algs": ["HS256"]}
            r = await client.put(f"/api/v1/orgs/{org.id}/sso", json=bad, headers=h)
            assert r.status_code == 422, r.text
            responses.append(r)
        # a full login (the secret goes to the token endpoint) and a failing one
        sub, _ = idp_user(provider)
        async with server.client() as client:
            r = await sso_login(client, org.id, sub)
            assert r.status_code == 200, r.text
            responses.append(r)
        provider.bad_signature = True
        async with server.client() as client:
            r = await sso_login(client, org.id, sub)
            assert r.status_code == 401
            responses.append(r)
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        structlog.configure(**saved_structlog)
    stored = (await sso.get_provider_settings(platform.db, SYSTEM, org.id)).has_client_secret
    assert stored
    async with platform.db.control_tx(ControlContext.system_context()) as conn:
        cur = await conn.execute(
            "SELECT client_secret FROM lv_control.oidc_providers WHERE org_id = %s", [org.id]
        )
        row = await cur.fetchone()
    assert row is not None and secret.encode() not in bytes(row[0])
    encoded = urlencode({"s": secret})[2:]
    texts = [r.text + str(r.headers) for r in responses]
    texts += await audit_bodies(platform, org.id)
    texts.append(buffer.getvalue())
    assert buffer.getvalue(), "the log capture caught nothing"
    for text in texts:
        assert secret not in text and encoded not in text
    bodies = await audit_bodies(platform, org.id)
    assert sum('"sso.configure"' in b for b in bodies) == 2
    assert any('"auth.sso.success"' in b for b in bodies)
    assert any('"auth.sso.failed"' in b for b in bodies)


async def test_settings_are_for_org_admins_with_a_fresh_sign_in(
    platform: Platform, server: ServerThread, provider: OidcTestProvider
) -> None:
    org, other = await make_org(platform), await make_org(platform)
    member = await make_user(platform, org.id)
    admin = await make_user(platform, other.id, org_admin=True)
    await configure(platform, org.id, provider)
    async with server.client() as client:
        await sign_in(client, member)
        assert (await client.get(f"/api/v1/orgs/{org.id}/sso")).status_code == 403
    async with server.client() as client:
        await sign_in(client, admin)
        assert (await client.get(f"/api/v1/orgs/{org.id}/sso")).status_code == 404
    # the service asks for a recent re-authentication of a session
    stale = Actor(
        kind=ActorKind.USER,
        user_id=admin.id,
        org_id=other.id,
        is_org_admin=True,
        session_id=str(uuid.uuid4()),
        recently_authenticated=False,
    )
    with pytest.raises(PermissionDeniedError, match="re-authentication"):
        await sso.configure_provider(
            platform.db,
            platform.sealer,
            stale,
            other.id,
            issuer=provider.issuer,
            client_id=provider.client_id,
            client_secret=provider.client_secret,
        )
