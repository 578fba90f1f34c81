from __future__ import annotations

from tests.support.platform import ServerThread, make_org, make_project

from labelvault.platform import Platform


async def test_project_creation_and_health(platform: Platform, server: ServerThread) -> None:
    org = await make_org(platform)
    project = await make_project(platform, org.id)
    assert project.status == "active"
    async with server.client() as client:
        r = await client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}
    assert r.headers["strict-transport-security"].startswith("max-age=63072000")
