"""Sign-in without enumeration, second factors with replay guards, throttling and locks."""

from __future__ import annotations

import statistics
import time

import psycopg
import pyotp
from tests.support.platform import ServerThread, make_org, make_user, sign_in, totp_now

from labelvault.db.bootstrap import DatabaseTarget
from labelvault.identity import throttling
from labelvault.platform import Platform


async def test_unknown_user_and_wrong_password_look_the_same(
    platform: Platform, server: ServerThread
) -> None:
    org = await make_org(platform)
    user = await make_user(platform, org.id)
    timings: dict[str, list[float]] = {"unknown": [], "wrong": []}
    async with server.client() as client:
        answers = set()
        for attempt in range(3):
            for kind, email in (("unknown", f"ghost{attempt}@example.test"), ("wrong", user.email)):
                started = time.perf_counter()
                r = await client.post(
                    "/api/v1/auth/login",
                    json={"email": email, "password": f"wrong password {kind}"},
                )
                timings[kind].append(time.perf_counter() - started)
                answers.add((r.status_code, r.json()["detail"]))
    assert answers == {(401, "email or password is incorrect")}
    # both paths run argon2: neither is much faster than the other
    unknown, wrong = statistics.median(timings["unknown"]), statistics.median(timings["wrong"])
    assert 1 / 3 < unknown / wrong < 3


async def test_throttling_backs_off_with_retry_after(
    platform: Platform, server: ServerThread
) -> None:
    org = await make_org(platform)
    user = await make_user(platform, org.id)
    async with server.client() as client:
        statuses = []
        for _ in range(7):
            r = await client.post(
                "/api/v1/auth/login", json={"email": user.email, "password": "not it at all"}
            )
            statuses.append(r.status_code)
            if r.status_code == 429:
                assert int(r.headers["retry-after"]) >= 1
                assert "try again" in r.json()["detail"]
                break
        assert statuses[-1] == 429
        # the right password does not get through while throttled either
        r = await client.post(
            "/api/v1/auth/login", json={"email": user.email, "password": user.password}
        )
        assert r.status_code == 429


async def test_lock_after_many_failures_and_admin_unlock(
    platform: Platform, server: ServerThread, db_target: DatabaseTarget
) -> None:
    org = await make_org(platform)
    admin = await make_user(platform, org.id, org_admin=True)
    user = await make_user(platform, org.id)
    key = throttling.account_key(user.email)
    # 100 failures within the hour (seeded; the back-off makes real ones take hours)
    with psycopg.connect(db_target.owner_dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO lv_control.auth_failures (key, at) SELECT %s, now() - "
            "make_interval(secs => g) FROM generate_series(1000, 1099) g",
            [key],
        )
    async with server.client() as client, server.client() as admin_client:
        r = await client.post(
            "/api/v1/auth/login", json={"email": user.email, "password": user.password}
        )
        assert r.status_code == 429
        assert "locked" in r.json()["detail"]
        csrf = await sign_in(admin_client, admin)
        r = await admin_client.post(
            f"/api/v1/orgs/{org.id}/users/{user.id}/unlock", headers={"x-csrf-token": csrf}
        )
        assert r.status_code == 204
        r = await client.post(
            "/api/v1/auth/login", json={"email": user.email, "password": user.password}
        )
        assert r.status_code == 200


async def test_totp_replay_expired_codes_and_recovery_codes(
    platform: Platform, server: ServerThread
) -> None:
    org = await make_org(platform)
    admin = await make_user(platform, org.id, org_admin=True)
    async with server.client() as client:
        r = await client.post(
            "/api/v1/auth/login", json={"email": admin.email, "password": admin.password}
        )
        csrf = r.json()["csrf_token"]
        r = await client.post("/api/v1/auth/mfa/totp/begin", headers={"x-csrf-token": csrf})
        secret = r.json()["secret"]
        assert r.json()["otpauth_uri"].startswith("otpauth://totp/")
        r = await client.post(
            "/api/v1/auth/mfa/totp/confirm",
            headers={"x-csrf-token": csrf},
            json={"code": pyotp.TOTP(secret).now()},
        )
        codes = r.json()["recovery_codes"]
        assert len(codes) == 10
    admin.totp_secret = secret

    async def second_factor(code: str) -> int:
        async with server.client() as c:
            r = await c.post(
                "/api/v1/auth/login", json={"email": admin.email, "password": admin.password}
            )
            assert r.json()["mfa_required"] is True
            r = await c.post(
                "/api/v1/auth/mfa/verify",
                headers={"x-csrf-token": r.json()["csrf_token"]},
                json={"code": code},
            )
            return r.status_code

    # an expired code (three steps old), garbage, then the current code once and never again
    assert await second_factor(totp_now(secret, offset_steps=-3)) == 401
    assert await second_factor("12ab56") == 401
    fresh = totp_now(secret, offset_steps=1)
    assert await second_factor(fresh) == 200
    assert await second_factor(fresh) == 401
    # a recovery code works once
    assert await second_factor(codes[0]) == 200
    assert await second_factor(codes[0]) == 401
    assert await second_factor(codes[1].upper().replace("-", " ")) == 200


def test_pruning_old_failures_reads_only_what_it_deletes(db_target: DatabaseTarget) -> None:
    """Each failure prunes the old ones: through the index on ``at``, not a scan of every
    failure (a spraying attack would otherwise make each failure cost all the others)."""
    from labelvault.auth.throttle import LOCK_WINDOW_SECONDS

    with psycopg.connect(db_target.owner_dsn) as conn:  # rolled back at the end
        conn.execute(
            "INSERT INTO lv_control.auth_failures (key, at) SELECT 'spray:' || g, now() - "
            "make_interval(secs => g % 3600) FROM generate_series(1, 50000) g"
        )
        conn.execute("ANALYZE lv_control.auth_failures")
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                "EXPLAIN DELETE FROM lv_control.auth_failures "
                "WHERE at < now() - make_interval(secs => %s)",
                [LOCK_WINDOW_SECONDS * 2],
            ).fetchall()
        )
        conn.rollback()
    assert "auth_failures_at_idx" in plan, plan
