"""Sessions, CSRF and immediate revocation, over real HTTPS."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from tests.support.platform import (
    SYSTEM,
    ServerThread,
    TestUser,
    add_member,
    make_org,
    make_project,
    make_user,
    sign_in,
    token_for,
)

from labelvault.db.bootstrap import DatabaseTarget
from labelvault.platform import Platform


@pytest.fixture
async def setup(platform: Platform) -> tuple[uuid.UUID, TestUser]:
    org = await make_org(platform)
    project = await make_project(platform, org.id)
    user = await make_user(platform, org.id)
    await add_member(platform, project.id, user, "manager")
    return project.id, user


async def test_session_cookie_is_host_only_httponly_strict(
    server: ServerThread, setup: tuple
) -> None:  # type: ignore[type-arg]
    _, user = setup
    async with server.client() as client:
        r = await client.post(
            "/api/v1/auth/login", json={"email": user.email, "password": user.password}
        )
    assert r.status_code == 200
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("__Host-lv_session=")
    for attribute in ("Secure", "HttpOnly", "SameSite=strict", "Path=/"):
        assert attribute.lower() in cookie.lower()
    assert "domain=" not in cookie.lower()
    assert r.headers["cache-control"] == "no-store"


async def test_each_login_gets_a_new_session_and_logout_ends_it(
    server: ServerThread, setup: tuple
) -> None:  # type: ignore[type-arg]
    _, user = setup
    async with server.client() as one, server.client() as two:
        csrf1 = await sign_in(one, user)
        await sign_in(two, user)
        assert one.cookies["__Host-lv_session"] != two.cookies["__Host-lv_session"]
        stolen = one.cookies["__Host-lv_session"]
        r = await one.post("/api/v1/auth/logout", headers={"x-csrf-token": csrf1})
        assert r.status_code == 204
        assert "cookies" in r.headers["clear-site-data"]
        # the old cookie is dead server-side, even when replayed
        async with server.client(cookies={"__Host-lv_session": stolen}) as replay:
            assert (await replay.get("/api/v1/auth/session")).status_code == 401
        assert (await two.get("/api/v1/auth/session")).status_code == 200


async def test_csrf_is_required_and_bound_to_the_session(
    server: ServerThread, setup: tuple
) -> None:  # type: ignore[type-arg]
    _, user = setup
    async with server.client() as one, server.client() as two:
        await sign_in(one, user)
        csrf_two = await sign_in(two, user)
        r = await one.post("/api/v1/auth/logout-all")
        assert r.status_code == 403
        assert "CSRF" in r.json()["detail"]
        r = await one.post("/api/v1/auth/logout-all", headers={"x-csrf-token": csrf_two})
        assert r.status_code == 403
        r = await one.post("/api/v1/auth/logout-all", headers={"x-csrf-token": "forged.token"})
        assert r.status_code == 403
        assert (await one.get("/api/v1/auth/session")).status_code == 200  # nothing happened


async def _age_sessions(
    db_target: DatabaseTarget, user: TestUser, column: str, interval: str
) -> None:
    with psycopg.connect(db_target.owner_dsn, autocommit=True) as conn:
        conn.execute(
            f"UPDATE lv_control.sessions SET {column} = now() - %s::interval WHERE user_id = %s",
            [interval, user.id],
        )


async def test_idle_timeout_and_absolute_lifetime(
    server: ServerThread,
    setup: tuple,  # type: ignore[type-arg]
    db_target: DatabaseTarget,
) -> None:
    _, user = setup
    async with server.client() as client:
        await sign_in(client, user)
        assert (await client.get("/api/v1/auth/session")).status_code == 200
        await _age_sessions(db_target, user, "last_seen_at", "31 minutes")
        assert (await client.get("/api/v1/auth/session")).status_code == 401
        await sign_in(client, user)
        await _age_sessions(db_target, user, "expires_at", "1 second")
        assert (await client.get("/api/v1/auth/session")).status_code == 401
    with psycopg.connect(db_target.owner_dsn) as conn:
        reasons = {
            r[0]
            for r in conn.execute(
                "SELECT ended_reason FROM lv_control.sessions WHERE user_id = %s", [user.id]
            )
        }
    assert {"idle", "expired"} <= reasons


async def test_revocations_take_effect_on_the_next_request(
    platform: Platform,
    server: ServerThread,
    setup: tuple,  # type: ignore[type-arg]
) -> None:
    project_id, user = setup
    from labelvault import identity

    path = f"/api/v1/projects/{project_id}"
    token = await token_for(platform, user, [project_id])
    async with (
        server.client() as client,
        server.client(headers={"authorization": f"Bearer {token}"}) as program,
    ):
        await sign_in(client, user)
        assert (await client.get(path)).status_code == 200
        assert (await program.get(path)).status_code == 200

        # membership removed: both the session and the token lose the project at once
        await identity.remove_membership(
            platform.db, SYSTEM, project_id=project_id, user_id=user.id
        )
        assert (await client.get(path)).status_code == 404
        assert (await program.get(path)).status_code == 404
        await add_member(platform, project_id, user, "manager")
        assert (await client.get(path)).status_code == 200

        # token revoked
        tokens = await identity.list_tokens(platform.db, SYSTEM, user.id)
        await identity.revoke_token(platform.db, SYSTEM, tokens[0].id)
        r = await program.get(path)
        assert r.status_code == 401
        assert "revoked" in r.json()["detail"]

        # user disabled: sessions end and new sign-ins are refused
        await identity.set_user_status(platform.db, SYSTEM, user.id, disabled=True)
        assert (await client.get(path)).status_code == 401
        r = await client.post(
            "/api/v1/auth/login", json={"email": user.email, "password": user.password}
        )
        assert r.status_code == 401
        await identity.set_user_status(platform.db, SYSTEM, user.id, disabled=False)


async def test_token_of_a_disabled_user_and_token_limits(
    platform: Platform, server: ServerThread, setup: tuple
) -> None:  # type: ignore[type-arg]
    project_id, user = setup
    from labelvault import identity

    other_project = await make_project(platform, user.org_id)  # type: ignore[arg-type]
    await add_member(platform, other_project.id, user, "manager")
    annotator_token = await token_for(platform, user, [project_id], max_role="annotator")
    manager_token = await token_for(platform, user, [project_id], max_role="manager")
    async with (
        server.client(headers={"authorization": f"Bearer {annotator_token}"}) as low,
        server.client(headers={"authorization": f"Bearer {manager_token}"}) as high,
    ):
        # the user is a manager, but this token is capped at annotator: it grants nothing here
        assert (await low.get(f"/api/v1/projects/{project_id}")).status_code == 404
        assert (await high.get(f"/api/v1/projects/{project_id}")).status_code == 200
        # a token only reaches the projects it names
        assert (await high.get(f"/api/v1/projects/{other_project.id}")).status_code == 404
        # and never carries administrator rights, even for an administrator's token
        assert (await high.get("/api/v1/orgs")).status_code == 403
        await identity.set_user_status(platform.db, SYSTEM, user.id, disabled=True)
        assert (await high.get(f"/api/v1/projects/{project_id}")).status_code == 401
    await identity.set_user_status(platform.db, SYSTEM, user.id, disabled=False)


async def test_sign_out_everywhere_and_password_change(server: ServerThread, setup: tuple) -> None:  # type: ignore[type-arg]
    _, user = setup
    async with server.client() as one, server.client() as two, server.client() as three:
        csrf1 = await sign_in(one, user)
        await sign_in(two, user)
        r = await one.post(
            "/api/v1/auth/password",
            headers={"x-csrf-token": csrf1},
            json={
                "current_password": user.password,
                "new_password": "an entirely new passphrase 7",
            },
        )
        assert r.status_code == 204
        assert (await two.get("/api/v1/auth/session")).status_code == 401  # other session ended
        assert (await one.get("/api/v1/auth/session")).status_code == 200  # this one kept
        user.password = "an entirely new passphrase 7"
        csrf3 = await sign_in(three, user)
        r = await three.post("/api/v1/auth/logout-all", headers={"x-csrf-token": csrf3})
        assert r.status_code == 204
        assert (await one.get("/api/v1/auth/session")).status_code == 401
        assert (await three.get("/api/v1/auth/session")).status_code == 401


async def test_unfinished_sign_in_reaches_nothing_else(
    platform: Platform, server: ServerThread
) -> None:
    org = await make_org(platform)
    admin = await make_user(platform, org.id, org_admin=True)
    async with server.client() as client:
        r = await client.post(
            "/api/v1/auth/login", json={"email": admin.email, "password": admin.password}
        )
        assert r.json()["mfa_enrollment_required"] is True
        r = await client.get(f"/api/v1/orgs/{org.id}/users")
        assert r.status_code == 401
        assert "second factor" in r.json()["detail"]


async def test_refused_token_is_recorded(
    platform: Platform, server: ServerThread, setup: tuple
) -> None:  # type: ignore[type-arg]
    """The refusal is committed although the request fails (it is not rolled back with it)."""
    import json

    from labelvault.audit.sealer import seal_control
    from labelvault.db.context import ControlContext

    project_id, user = setup
    from labelvault import identity

    token = await token_for(platform, user, [project_id])
    tokens = await identity.list_tokens(platform.db, SYSTEM, user.id)
    await identity.revoke_token(platform.db, SYSTEM, tokens[0].id)
    async with server.client(headers={"authorization": f"Bearer {token}"}) as program:
        assert (await program.get(f"/api/v1/projects/{project_id}")).status_code == 401
    await seal_control(platform.db)
    async with platform.db.control_tx(ControlContext.system_context()) as conn:
        cur = await conn.execute(
            "SELECT body FROM lv_control.audit_events ORDER BY seq DESC LIMIT 500"
        )
        bodies = [json.loads(bytes(r[0])) for r in await cur.fetchall()]
    assert any(
        b["action"] == "auth.token.rejected" and b["token_id"] == str(tokens[0].id) for b in bodies
    )
