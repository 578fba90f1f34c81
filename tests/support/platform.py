"""Test support: a real PostgreSQL (embedded, or LABELVAULT_DATABASE_URL), the platform on it,
and a real HTTPS server in a thread. Nothing of ours is mocked."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyotp
import uvicorn

from labelvault import identity
from labelvault.api.app import create_app
from labelvault.db.bootstrap import DatabaseTarget
from labelvault.kernel.actor import Actor
from labelvault.platform import Platform
from labelvault.server import build_ssl_context, uvicorn_config
from labelvault.settings import Settings
from labelvault.tenancy import service as tenancy

SYSTEM = Actor.system("tests")
PASSWORD = "correct horse battery staple 42"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ServerThread:
    """``labelvault``'s real app on uvicorn with TLS 1.3, in a thread with its own event loop."""

    def __init__(self, settings: Settings, target: DatabaseTarget) -> None:
        self.settings = settings
        self.port = free_port()
        self.platform = Platform.create(settings, target)
        context = build_ssl_context(settings)
        self.server = uvicorn.Server(
            uvicorn_config(create_app(self.platform), settings, context, port=self.port)
        )
        self.thread = threading.Thread(target=self._run, daemon=True, name="labelvault-server")

    def _run(self) -> None:
        asyncio.run(self.server.serve())

    def start(self) -> None:
        self.thread.start()
        for _ in range(500):
            if self.server.started:
                return
            if not self.thread.is_alive():
                raise RuntimeError("server thread died")
            threading.Event().wait(0.02)
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    @property
    def ca_file(self) -> Path:
        return self.settings.data_dir.resolve() / "tls" / "localhost.crt"

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url, verify=self.client_context(), timeout=30, **kwargs
        )


@dataclass
class TestUser:
    __test__ = False  # a person in the tests, not a test class

    id: uuid.UUID
    email: str
    password: str
    org_id: uuid.UUID | None
    totp_secret: str | None = None


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def make_org(platform: Platform, **kw: Any) -> tenancy.Organization:
    return await tenancy.create_organization(
        platform.db, SYSTEM, name=unique("org"), region=kw.get("region", "local")
    )


async def make_project(platform: Platform, org_id: uuid.UUID, **kw: Any) -> tenancy.Project:
    return await tenancy.create_project(
        platform.db,
        platform.sealer,
        SYSTEM,
        org_id=org_id,
        name=kw.get("name", unique("project")),
        region=kw.get("region"),
    )


async def make_user(
    platform: Platform,
    org_id: uuid.UUID | None,
    *,
    org_admin: bool = False,
    system_admin: bool = False,
) -> TestUser:
    email = f"{unique('user')}@example.test"
    user = await identity.create_user(
        platform.db,
        SYSTEM,
        email=email,
        org_id=org_id,
        password=PASSWORD,
        is_org_admin=org_admin,
        is_system_admin=system_admin,
    )
    return TestUser(user.id, email, PASSWORD, org_id)


async def add_member(platform: Platform, project_id: uuid.UUID, user: TestUser, role: str) -> None:
    await identity.set_membership(
        platform.db, SYSTEM, project_id=project_id, user_id=user.id, role=role
    )


def totp_now(secret: str, *, offset_steps: int = 0) -> str:
    import time

    return pyotp.TOTP(secret).at(time.time() + 30 * offset_steps)


async def sign_in(client: httpx.AsyncClient, user: TestUser) -> str:
    """Sign in over HTTP (enrolling TOTP when required); returns the CSRF token."""
    r = await client.post(
        "/api/v1/auth/login", json={"email": user.email, "password": user.password}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    csrf = body["csrf_token"]
    if body["mfa_enrollment_required"]:
        r = await client.post("/api/v1/auth/mfa/totp/begin", headers={"x-csrf-token": csrf})
        assert r.status_code == 200, r.text
        user.totp_secret = r.json()["secret"]
        r = await client.post(
            "/api/v1/auth/mfa/totp/confirm",
            headers={"x-csrf-token": csrf},
            json={"code": totp_now(user.totp_secret)},
        )
        assert r.status_code == 200, r.text
    elif body["mfa_required"]:
        assert user.totp_secret
        # a fresh step so the replay guard accepts it
        code = totp_now(user.totp_secret, offset_steps=1)
        r = await client.post(
            "/api/v1/auth/mfa/verify", headers={"x-csrf-token": csrf}, json={"code": code}
        )
        assert r.status_code == 200, r.text
        csrf = r.json()["csrf_token"]
    return str(csrf)


async def token_for(
    platform: Platform, user: TestUser, project_ids: list[uuid.UUID], max_role: str = "manager"
) -> str:
    """An API token for ``user`` created through the service (as from a fresh session)."""
    actor = Actor(
        kind=identity.tokens.ActorKind.USER,
        user_id=user.id,
        org_id=user.org_id,
        session_id=str(uuid.uuid4()),
        recently_authenticated=True,
    )
    created = await identity.create_token(
        platform.db, actor, name="test", project_ids=project_ids, max_role=max_role
    )
    return created.token


def iter_nothing() -> Iterator[None]:
    yield from ()


def cli_env(settings: Settings, target: DatabaseTarget, **extra: str) -> dict[str, str]:
    """Environment for the real ``labelvault`` CLI on the session's database and data
    directory. It attaches as an external database (the owner DSN), so it holds no handle on
    the embedded server: a killed CLI leaves nothing behind that would keep the server alive."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("LABELVAULT_")}
    for keep in ("LABELVAULT_APP_DB_PASSWORD", "LABELVAULT_LOCAL_KEK"):
        if keep in os.environ:
            env[keep] = os.environ[keep]
    env.update(
        LABELVAULT_DATA_DIR=str(settings.data_dir),
        LABELVAULT_DATABASE_URL=target.owner_dsn,
        LABELVAULT_LOG_LEVEL="warning",
        PYTHONUNBUFFERED="1",
        COLUMNS="300",
        NO_COLOR="1",
    )
    env.update(extra)
    return env
