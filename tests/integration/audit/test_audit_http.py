"""Reading and exporting the audit trail over HTTPS, with real users, roles and sessions."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
from audit_support import run_cli
from tests.support.platform import (
    ServerThread,
    TestUser,
    add_member,
    make_org,
    make_project,
    make_user,
    sign_in,
)

from labelvault.audit.export import verify_export
from labelvault.audit.record import audit_project
from labelvault.audit.signing import public_verifier_key
from labelvault.db.context import ProjectContext
from labelvault.platform import Platform


async def _seed(platform: Platform, pid: uuid.UUID) -> None:
    async with platform.db.project_tx(pid, ProjectContext(None, "system")) as conn:
        for i in range(10):
            await audit_project(
                conn,
                None,
                "item.read" if i % 2 else "task.submit",
                actor_id=f"u{i % 3}",
                resource_type="item",
                resource_id=f"it-{i}",
                project_id=pid,
            )


async def _get(server: ServerThread, who: TestUser, path: str, **params: Any) -> httpx.Response:
    async with server.client() as client:
        await sign_in(client, who)
        return await client.get(path, params=params)


async def test_project_trail_access_filters_and_pagination(
    platform: Platform, server: ServerThread
) -> None:
    org = await make_org(platform)
    project = await make_project(platform, org.id)
    pid = project.id
    users = {}
    for role in ("manager", "data_owner", "annotator", "reviewer"):
        users[role] = await make_user(platform, org.id)
        await add_member(platform, pid, users[role], role)
    admin = await make_user(platform, org.id, org_admin=True)
    other_org = await make_org(platform)
    outsider = await make_user(platform, other_org.id, org_admin=True)
    await _seed(platform, pid)
    path = f"/api/v1/projects/{pid}/audit"

    async with server.client() as client:
        await sign_in(client, users["manager"])
        r = await client.get(path)
        assert r.status_code == 200, r.text
        assert r.headers["cache-control"] == "no-store"
        events = r.json()["events"]
        assert [e["seq"] for e in events] == list(range(10, 0, -1))
        assert {"leaf", "prev_hash", "chain_hash", "ts", "ts_us", "action"} <= events[0].keys()

        async def seqs(**params: Any) -> list[int]:
            r = await client.get(path, params=params)
            assert r.status_code == 200, r.text
            return [e["seq"] for e in r.json()["events"]]

        assert await seqs(action="item.read") == [10, 8, 6, 4, 2]
        assert await seqs(action="item.*") == [10, 8, 6, 4, 2]
        assert await seqs(action="task.*", order="asc") == [1, 3, 5, 7, 9]
        assert await seqs(user="u1") == [8, 5, 2]
        assert await seqs(resource_type="item", resource_id="it-3") == [4]
        since, until = events[-4]["ts"], events[-7]["ts"]  # seq 4 .. seq 7
        window = await seqs(since=since, until=until, action="item.*")
        assert set(window) >= {4, 6} and all(s <= 10 for s in window)
        # keyset pagination: every event once, in order, across pages
        seen: list[int] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 3, "order": "asc"}
            if cursor is not None:
                params["cursor"] = cursor
            r = await client.get(path, params=params)
            body = r.json()
            seen += [e["seq"] for e in body["events"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert seen == list(range(1, len(seen) + 1)) and len(seen) > 10
        # bad filters are refused
        assert (await client.get(path, params={"limit": 501})).status_code == 422
        assert (await client.get(path, params={"action": "auth.*.x"})).status_code == 422
        # the reads themselves are in the trail
        reads = (await client.get(path, params={"action": "audit.read"})).json()["events"]
        assert reads and all(e["actor_id"] == str(users["manager"].id) for e in reads)
        assert {"filter_action": "item.*", "count": 5} in [e["details"] for e in reads]

    r = await _get(server, users["data_owner"], path, action="item.read")
    assert r.status_code == 200 and len(r.json()["events"]) == 5
    for role in ("annotator", "reviewer"):
        assert (await _get(server, users[role], path)).status_code == 403
    assert (await _get(server, outsider, path)).status_code == 404
    # an organization administrator reads as the platform: recorded as privileged
    assert (await _get(server, admin, path, limit=1)).status_code == 200
    r = await _get(server, users["manager"], path, action="audit.read", user=str(admin.id))
    [event] = r.json()["events"]
    assert event["privileged"] is True and event["reason"] == "administrator trail review"


async def test_org_trail(platform: Platform, server: ServerThread) -> None:
    org = await make_org(platform)
    project = await make_project(platform, org.id)
    admin = await make_user(platform, org.id, org_admin=True)
    member = await make_user(platform, org.id)
    await add_member(platform, project.id, member, "manager")
    other = await make_user(platform, (await make_org(platform)).id, org_admin=True)
    path = f"/api/v1/orgs/{org.id}/audit"
    r = await _get(server, admin, path, action="project.create")
    assert r.status_code == 200, r.text
    [event] = r.json()["events"]
    assert event["resource_id"] == str(project.id) and event["org_id"] == str(org.id)
    r = await _get(server, admin, path, action="audit.read")
    assert r.json()["events"][0]["actor_id"] == str(admin.id)
    assert (await _get(server, member, path)).status_code == 403
    assert (await _get(server, other, path)).status_code == 404


async def test_export_verifies_and_any_changed_byte_fails(
    platform: Platform, server: ServerThread, tmp_path: Path
) -> None:
    org = await make_org(platform)
    project = await make_project(platform, org.id)
    manager = await make_user(platform, org.id)
    annotator = await make_user(platform, org.id)
    await add_member(platform, project.id, manager, "manager")
    await add_member(platform, project.id, annotator, "annotator")
    await _seed(platform, project.id)
    path = f"/api/v1/projects/{project.id}/audit/export"
    r = await _get(server, manager, path)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/x-ndjson")
    export = tmp_path / "audit.jsonl"
    export.write_bytes(r.content)
    lines = r.content.splitlines()
    assert b'"action":"audit.export"' in lines[-2]  # the export records itself, and includes it
    key = await public_verifier_key(platform)
    report = verify_export(export, [key])
    assert report.ok and report.events_checked == 11, report.to_json()
    assert report.anchored_size == 11

    cli = [
        str(Path(sys.executable).parent / "labelvault"),
        "audit",
        "verify-export",
        str(export),
        "--public-key",
        key,
    ]
    assert (await run_cli(cli)).returncode == 0
    data = r.content
    for offset in (
        data.index(b"task.submit") + 2,
        data.index(b'"leaf":"') + 10,
        5,
        len(data) - 40,
        data.index(b'"ts":"') + 8,
    ):
        tampered = bytearray(data)
        tampered[offset] ^= 0x01
        export.write_bytes(bytes(tampered))
        assert not verify_export(export, [key]).ok, offset
    assert (await run_cli(cli)).returncode == 1
    # dropping the last events (and the trailer's claim) is caught too
    export.write_bytes(b"\n".join(lines[:5] + lines[-1:]) + b"\n")
    assert not verify_export(export, [key]).ok
    assert (await _get(server, annotator, path)).status_code == 403
