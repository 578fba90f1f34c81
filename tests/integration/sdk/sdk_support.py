"""A project with one person per role, each holding an API token (for SDK-level tests)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from tests.support.platform import (
    ServerThread,
    TestUser,
    add_member,
    make_org,
    make_project,
    make_user,
    token_for,
)

from labelvault.client import AsyncClient, Client
from labelvault.platform import Platform

ROLES = ("manager", "data_owner", "annotator", "annotator2", "reviewer")
TEXT_SCHEMA: dict[str, object] = {"kind": "text_classification", "labels": ["spam", "ham"]}


@dataclass
class SdkTeam:
    project_id: uuid.UUID
    org_id: uuid.UUID
    server: ServerThread
    users: dict[str, TestUser] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)

    def client(self, role: str, **kw: object) -> Client:
        return Client(self.server.url, self.tokens[role], verify=str(self.server.ca_file), **kw)  # type: ignore[arg-type]

    def aclient(self, role: str) -> AsyncClient:
        return AsyncClient(self.server.url, self.tokens[role], verify=str(self.server.ca_file))


async def build_sdk_team(
    platform: Platform, server: ServerThread, schema: dict[str, object] | None = TEXT_SCHEMA
) -> SdkTeam:
    org = await make_org(platform)
    project = await make_project(platform, org.id)
    team = SdkTeam(project.id, org.id, server)
    for name in ROLES:
        user = await make_user(platform, org.id)
        role = "annotator" if name.startswith("annotator") else name
        await add_member(platform, project.id, user, role)
        team.users[name] = user
        team.tokens[name] = await token_for(platform, user, [project.id], max_role=role)
    if schema is not None:
        async with team.aclient("manager") as manager:
            await manager.set_label_schema(project.id, schema)
    return team


def export_routes_exist() -> bool:
    """Whether the export routes are mounted in this checkout's API."""
    from labelvault.api.routes import ROUTERS

    paths = {getattr(r, "path", "") for router in ROUTERS for r in router.routes}
    return any(p.endswith("/exports") for p in paths) and any(
        p.endswith("/exports/{export_id}/approve") or p.endswith("/approve") for p in paths
    )
