"""The authorization matrix, generated from the route table.

Every route × every caller (each project role in project A, an organization administrator, a
system administrator, a member of no project, a user of another organization, anonymous) ×
every target (own project A, project B of the same organization, project C of another
organization; own and other organization) gets the status the permission table predicts: the
route's success status when allowed, 403 when the caller can see the object but not do this,
404 when the caller may not know the object exists, 401 when not signed in. A route without a
row fails the test, so the matrix grows with the API.
"""

from __future__ import annotations

import contextlib
import importlib
import pkgutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
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
)

from labelvault.access import Permission, Role, Scope, can
from labelvault.api.app import api_routes, create_app
from labelvault.api.security import ACCESS_ATTR
from labelvault.kernel.errors import NotFoundError
from labelvault.platform import Platform

PROJECT_ROLES = ("annotator", "reviewer", "manager", "data_owner")
CALLERS = (*PROJECT_ROLES, "org_admin", "system_admin", "no_membership", "other_org")


def load_rows() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    here = Path(__file__).parent
    for info in pkgutil.iter_modules([str(here)]):
        if info.name.startswith("matrix_"):
            rows += importlib.import_module(f"tests.http.{info.name}").ROWS
    return rows


ROWS = load_rows()


def test_every_route_has_a_matrix_row_that_matches_its_declaration(platform: Platform) -> None:
    app = create_app(platform, manage_lifecycle=False)
    declared = {}
    for route in api_routes(app.router.routes):
        access = getattr(route.endpoint, ACCESS_ATTR)
        for method in route.methods or ():
            declared[(method, route.path)] = access
    by_key = {(r["method"], r["path"]): r for r in ROWS}
    missing = sorted(set(declared) - set(by_key))
    assert missing == [], f"routes without a matrix row: {missing}"
    stale = sorted(set(by_key) - set(declared))
    assert stale == [], f"matrix rows without a route: {stale}"
    for key, access in declared.items():
        row = by_key[key]
        assert (access.permission.value, access.scope.value) == (row["permission"], row["scope"]), (
            key
        )


@dataclass
class World:
    org1: uuid.UUID
    org2: uuid.UUID
    project_a: uuid.UUID
    project_b: uuid.UUID
    project_c: uuid.UUID
    users: dict[str, TestUser] = field(default_factory=dict)
    clients: dict[str, httpx.AsyncClient] = field(default_factory=dict)
    csrf: dict[str, str] = field(default_factory=dict)


async def _caller(platform: Platform, world: World, kind: str) -> TestUser:
    if kind == "system_admin":
        return await make_user(platform, None, system_admin=True)
    if kind == "org_admin":
        return await make_user(platform, world.org1, org_admin=True)
    if kind == "other_org":
        user = await make_user(platform, world.org2)
        await add_member(platform, world.project_c, user, "manager")
        return user
    user = await make_user(platform, world.org1)
    if kind in PROJECT_ROLES:
        await add_member(platform, world.project_a, user, kind)
    return user


@pytest.fixture(scope="module")
async def world(platform: Platform, server: ServerThread) -> Any:
    org1, org2 = await make_org(platform), await make_org(platform)
    a = await make_project(platform, org1.id)
    b = await make_project(platform, org1.id)
    c = await make_project(platform, org2.id)
    w = World(org1.id, org2.id, a.id, b.id, c.id)
    for kind in CALLERS:
        w.users[kind] = await _caller(platform, w, kind)
        client = server.client()
        w.csrf[kind] = await sign_in(client, w.users[kind])
        w.clients[kind] = client
    w.clients["anonymous"] = server.client()
    yield w
    for client in w.clients.values():
        await client.aclose()


@pytest.fixture(scope="module")
def oidc() -> Any:
    from tests.support.oidc_provider import run_oidc_provider

    with run_oidc_provider() as provider:
        yield provider


def caller_roles_in_project(world: World, caller: str, project: uuid.UUID) -> set[Role]:
    roles: set[Role] = set()
    if caller == "system_admin":
        roles.add(Role.SYSTEM_ADMIN)
    if caller == "org_admin" and project in (world.project_a, world.project_b):
        roles.add(Role.ORG_ADMIN)
    if caller in PROJECT_ROLES and project == world.project_a:
        roles.add(Role(caller))
    if caller == "other_org" and project == world.project_c:
        roles.add(Role.MANAGER)
    return roles


def expected_status(
    row: dict[str, Any], world: World, caller: str, target: uuid.UUID | None
) -> int:
    scope, perm, success = Scope(row["scope"]), Permission(row["permission"]), row["success"]
    if callable(success):
        success = success(caller)
    if row.get("setup") == "sso_login":  # no login was started: the callback must refuse
        success = row["without_setup"]
    if scope is Scope.PUBLIC:
        return int(success)
    if caller == "anonymous":
        return 401
    if scope is Scope.SELF:
        return int(success)
    if scope is Scope.SYSTEM:
        return int(success) if caller == "system_admin" else 403
    if scope is Scope.ORG:
        caller_org = world.org2 if caller == "other_org" else world.org1
        if caller == "system_admin":
            roles = {Role.SYSTEM_ADMIN}
        elif caller_org != target:
            return 404
        else:
            roles = {Role.ORG_ADMIN} if caller == "org_admin" else set()
        return int(success) if can(roles, perm) else 403
    assert target is not None
    roles = caller_roles_in_project(world, caller, target)
    if not roles:
        return 404
    return int(success) if can(roles, perm) else 403


def targets_for(row: dict[str, Any], world: World) -> list[uuid.UUID | None]:
    if "{project_id}" in row["path"]:
        return [world.project_a, world.project_b, world.project_c]
    if "{org_id}" in row["path"]:
        return [world.org1, world.org2]
    return [None]


async def resolve_path(
    row: dict[str, Any],
    world: World,
    platform: Platform,
    target: uuid.UUID | None,
    body: Any = None,
) -> tuple[str, Any]:
    path = str(row["path"])
    wants_user = "{user_id}" in path or (isinstance(body, dict) and "{user_id}" in body.values())
    if wants_user:
        if "{org_id}" in path:
            org = target
        else:
            org = world.org2 if target == world.project_c else world.org1
        assert org is not None
        user_id = str((await make_user(platform, org)).id)
        path = path.replace("{user_id}", user_id)
        if isinstance(body, dict):
            body = {k: (user_id if v == "{user_id}" else v) for k, v in body.items()}
    for placeholder in ("{token_id}", "{task_id}", "{review_id}", "{export_id}"):
        path = path.replace(placeholder, str(uuid.uuid4()))
    if target is not None:
        path = path.replace("{project_id}", str(target)).replace("{org_id}", str(target))
    return path, body


async def prepare_sso(
    row: dict[str, Any], platform: Platform, oidc: Any, target: uuid.UUID | None
) -> None:
    """SSO rows: configure the target organization's provider (the real test provider) when the
    row needs one, remove it otherwise, so every call starts from a known state."""
    if "/sso" not in row["path"] or target is None:
        return
    from labelvault.identity import sso

    if row.get("setup") == "sso":
        await sso.configure_provider(
            platform.db,
            platform.sealer,
            SYSTEM,
            target,
            issuer=oidc.issuer,
            client_id=oidc.client_id,
            client_secret=oidc.client_secret,
        )
    else:
        with contextlib.suppress(NotFoundError):
            await sso.delete_provider(platform.db, SYSTEM, target)


CASES = [(row, caller) for row in ROWS for caller in (*CALLERS, "anonymous")]


@pytest.mark.parametrize(
    ("row", "caller"), CASES, ids=[f"{r['method']} {r['path']} as {c}" for r, c in CASES]
)
async def test_matrix(
    row: dict[str, Any],
    caller: str,
    world: World,
    platform: Platform,
    server: ServerThread,
    oidc: Any,
) -> None:
    fresh = row.get("fresh_caller") and caller != "anonymous"
    for target in targets_for(row, world):
        client, csrf = world.clients[caller], world.csrf.get(caller, "")
        if fresh:
            user = await _caller(platform, world, caller)
            client = server.client()
            csrf = await sign_in(client, user)
        try:
            body = row.get("json")
            payload = body() if callable(body) else body
            path, payload = await resolve_path(row, world, platform, target, payload)
            await prepare_sso(row, platform, oidc, target)
            content = row.get("content")
            response = await client.request(
                row["method"],
                path,
                json=payload,
                params=row.get("params"),
                content=content() if callable(content) else content,
                headers={"x-csrf-token": csrf} if csrf else {},
            )
        finally:
            if fresh:
                await client.aclose()
        want = expected_status(row, world, caller, target)
        assert response.status_code == want, (
            f"{row['method']} {path} as {caller} on {target}: "
            f"{response.status_code} != {want}: {response.text[:300]}"
        )
        if response.status_code >= 400:
            assert response.headers["content-type"].startswith("application/problem+json")


def test_a_route_without_a_declaration_stops_the_start(platform: Platform) -> None:
    from fastapi import APIRouter

    from labelvault.api import routes
    from labelvault.api.security import RouteDeclarationError

    undeclared = APIRouter()

    @undeclared.get("/api/v1/forgotten")
    async def forgotten() -> dict[str, str]:
        return {}

    routes.ROUTERS.append(undeclared)
    try:
        with pytest.raises(RouteDeclarationError, match="/api/v1/forgotten"):
            create_app(platform, manage_lifecycle=False)
    finally:
        routes.ROUTERS.remove(undeclared)
