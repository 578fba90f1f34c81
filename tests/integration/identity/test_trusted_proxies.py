"""Behind a load balancer: X-Forwarded-For is believed from the configured proxies only, so
sessions, audit events and throttles see the client, and nobody else can claim an address."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from tests.support.platform import ServerThread, make_org, make_user, sign_in

from labelvault.db.bootstrap import DatabaseTarget
from labelvault.db.context import ControlContext
from labelvault.platform import Platform
from labelvault.settings import Settings

CLIENT = "203.0.113.9"


async def _session_address(platform: Platform, server: ServerThread) -> str:
    user = await make_user(platform, (await make_org(platform)).id)
    async with server.client(headers={"x-forwarded-for": CLIENT}) as client:
        await sign_in(client, user)
    async with platform.db.control_tx(ControlContext.system_context()) as conn:
        cur = await conn.execute(
            "SELECT source_address FROM lv_control.sessions WHERE user_id = %s", [user.id]
        )
        row = await cur.fetchone()
    assert row is not None
    return str(row[0])


async def test_forwarded_for_only_from_trusted_proxies(
    platform: Platform, server: ServerThread, settings: Settings, db_target: DatabaseTarget
) -> None:
    # no proxy configured: the header is anyone's to send, and is ignored
    assert await _session_address(platform, server) == "127.0.0.1"
    # a second server on the session's database: its checkpointer signs every chain once more
    # as it stops (the test database holds hundreds of projects), so it keeps few project pools
    # open, or those connections would crowd the tests that follow out of PostgreSQL's slots
    proxied = ServerThread(
        settings.model_copy(update={"trusted_proxies": "127.0.0.0/8", "project_pool_max": 4}),
        db_target,
    )
    proxied.start()
    try:
        assert await _session_address(platform, proxied) == CLIENT
    finally:
        proxied.stop()


def test_trusted_proxies_must_be_addresses() -> None:
    assert Settings(trusted_proxies=" 10.0.0.0/8, 192.0.2.1 ").trusted_proxies == (
        "10.0.0.0/8,192.0.2.1"
    )
    for bad in ("*", "10.0.0.0/8,*", "proxy.example", "10.0.0.300"):
        with pytest.raises(ValidationError):
            Settings(trusted_proxies=bad)
