"""Throttling of sign-in and second-factor attempts, per account and per source address.

Failures are recorded in ``lv_control.auth_failures``; ``labelvault.auth.throttle.decide`` turns
them into a decision. Keys never hold an email in clear: accounts are keyed by a hash of the
lower-cased email, so unknown and known accounts are throttled alike (no enumeration).
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import time
from typing import Any

from psycopg import AsyncConnection

from labelvault.auth import ThrottleDecision, ThrottlePolicy, decide
from labelvault.auth.throttle import DEFAULT_POLICY, LOCK_WINDOW_SECONDS
from labelvault.kernel.errors import ThrottledError

# One address may be a whole office behind NAT: far more room than one account gets, still a
# wall against credential stuffing from one source.
ADDRESS_POLICY = ThrottlePolicy(free_failures=100, lock_threshold=2000)


# Starting single sign-on costs a stored pending login and a request to the provider, without
# authentication: each start counts here. Room for a large office behind one address signing in
# at nine (~1 a second for a quarter of an hour), never a flood.
SSO_START_POLICY = ThrottlePolicy(free_failures=1000, lock_threshold=20_000)


def sso_start_key(org_id: object, address: str | None) -> str:
    """Per organization and source: a flood at one organization's sign-in does not close
    another's (behind a load balancer every client may share one address). IPv6 sources count
    per /64, the block one subscriber usually gets."""
    source = address or "unknown"
    with contextlib.suppress(ValueError):
        ip = ipaddress.ip_address(source)
        if ip.version == 6:
            source = str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return f"sso-start:{org_id}:{source}"


def account_key(email: str) -> str:
    return "acct:" + hashlib.sha256(email.strip().lower().encode()).hexdigest()


def address_key(address: str | None) -> str:
    return "addr:" + (address or "unknown")


def mfa_key(user_id: object) -> str:
    return f"mfa:{user_id}"


async def decision_for(conn: AsyncConnection[Any], key: str) -> ThrottleDecision:
    cur = await conn.execute(
        "SELECT extract(epoch FROM at)::float8 FROM lv_control.auth_failures "
        "WHERE key = %s AND at > now() - make_interval(secs => %s) ORDER BY at",
        [key, LOCK_WINDOW_SECONDS],
    )
    failures = [r[0] for r in await cur.fetchall()]
    cur = await conn.execute(
        "SELECT extract(epoch FROM reset_at)::float8 FROM lv_control.auth_resets WHERE key = %s",
        [key],
    )
    reset = await cur.fetchone()
    return decide(
        failures,
        now=time.time(),
        policy=_policy_for(key),
        reset_at=reset[0] if reset else None,
    )


def _policy_for(key: str) -> ThrottlePolicy:
    if key.startswith("addr:"):
        return ADDRESS_POLICY
    if key.startswith("sso-start:"):
        return SSO_START_POLICY
    return DEFAULT_POLICY


async def check_allowed(conn: AsyncConnection[Any], *keys: str) -> None:
    for key in keys:
        decision = await decision_for(conn, key)
        if decision.locked:
            raise ThrottledError(
                "too many failed attempts: sign-in is locked for this account; an administrator "
                "can lift the lock, or try again later",
                retry_after=max(decision.retry_after, 1),
            )
        if not decision.allowed:
            raise ThrottledError(
                f"too many failed attempts: try again in {max(decision.retry_after, 1)} seconds",
                retry_after=max(decision.retry_after, 1),
            )


async def record_failure(conn: AsyncConnection[Any], *keys: str) -> None:
    for key in keys:
        await conn.execute("INSERT INTO lv_control.auth_failures (key) VALUES (%s)", [key])
    # keep the table small: nothing older than the longest window matters
    await conn.execute(
        "DELETE FROM lv_control.auth_failures WHERE at < now() - make_interval(secs => %s)",
        [LOCK_WINDOW_SECONDS * 2],
    )


async def lift_lock(conn: AsyncConnection[Any], key: str, by: object) -> None:
    await conn.execute(
        "INSERT INTO lv_control.auth_resets (key, reset_at, reset_by) VALUES (%s, now(), %s) "
        "ON CONFLICT (key) DO UPDATE SET reset_at = now(), reset_by = excluded.reset_by",
        [key, by],
    )
