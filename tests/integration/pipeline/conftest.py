"""A project with one person per role, signed in over HTTPS with API tokens."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
from tests.support.platform import (
    ServerThread,
    TestUser,
    add_member,
    make_org,
    make_project,
    make_user,
    token_for,
)

from labelvault.platform import Platform

ROLES = ("manager", "data_owner", "annotator", "annotator2", "reviewer")


@dataclass
class Team:
    project_id: uuid.UUID
    org_id: uuid.UUID
    users: dict[str, TestUser] = field(default_factory=dict)
    clients: dict[str, httpx.AsyncClient] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"/api/v1/projects/{self.project_id}{path}"


async def build_team(
    platform: Platform, server: ServerThread, schema: dict[str, object] | None = None
) -> Team:
    org = await make_org(platform)
    project = await make_project(platform, org.id)
    team = Team(project.id, org.id)
    for name in ROLES:
        user = await make_user(platform, org.id)
        role = "annotator" if name.startswith("annotator") else name
        await add_member(platform, project.id, user, role)
        token = await token_for(platform, user, [project.id], max_role=role)
        team.users[name] = user
        team.clients[name] = server.client(headers={"authorization": f"Bearer {token}"})
    if schema is not None:
        r = await team.clients["manager"].put(team.url("/settings"), json={"label_schema": schema})
        assert r.status_code == 200, r.text
    return team


@pytest.fixture
async def team(platform: Platform, server: ServerThread) -> AsyncIterator[Team]:
    t = await build_team(
        platform, server, {"kind": "text_classification", "labels": ["spam", "ham"]}
    )
    yield t
    for client in t.clients.values():
        await client.aclose()
