"""Export bundles are kept only as long as needed: a ready export expires after the retention
time (its link dies, its bundle is deleted, audited), and bundles that downloads or failures
left behind are deleted by the sweep, once, even when the store was away the first time."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
from tests.integration.export.export_support import (
    LABELVAULT,
    annotated_text_team,
    cli_env,
    close_team,
    marker,
    ready_export,
)
from tests.integration.pipeline.conftest import Team
from tests.support.platform import ServerThread

from labelvault.db.bootstrap import DatabaseTarget
from labelvault.db.context import ProjectContext
from labelvault.export.expiry import sweep_all, sweep_project
from labelvault.platform import Platform
from labelvault.settings import Settings
from labelvault.storage import BlobStoreError

SYSTEM = ProjectContext(None, "system")


@pytest.fixture
def only(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Limit the sweep of every project to the given teams' (the test database holds other
    tests' projects)."""
    from labelvault.export import expiry

    def limit(*teams: Team) -> None:
        real = expiry.list_projects

        async def listed(db: object, actor: object) -> list[Any]:
            wanted = {t.project_id for t in teams}
            return [p for p in await real(db, actor) if p.id in wanted]  # type: ignore[arg-type]

        monkeypatch.setattr(expiry, "list_projects", listed)

    return limit


async def _row(platform: Platform, team: Team, export_id: str) -> dict[str, Any]:
    async with platform.db.project_tx(team.project_id, SYSTEM) as conn:
        cur = await conn.execute(
            "SELECT state, blob_id, download_token_hash, expires_at FROM exports WHERE id = %s",
            [export_id],
        )
        row = await cur.fetchone()
    assert row is not None
    return dict(zip(("state", "blob_id", "token_hash", "expires_at"), row, strict=True))


async def _set(platform: Platform, team: Team, export_id: str, assignments: str) -> None:
    async with platform.db.project_tx(team.project_id, SYSTEM) as conn:
        await conn.execute(f"UPDATE exports SET {assignments} WHERE id = %s", [export_id])


async def test_a_ready_export_expires_with_its_link_and_bundle(
    platform: Platform, server: ServerThread, only: Callable[..., None]
) -> None:
    team, _ = await annotated_text_team(platform, server, marker())
    other, _ = await annotated_text_team(platform, server, marker())
    only(team, other)
    try:
        owner = team.clients["data_owner"]
        built = await ready_export(team, platform)
        kept = await ready_export(other, platform)
        eid = built["export_id"]
        url = team.url(f"/exports/{eid}")
        # the bundle is kept for the retention time, and the export says until when
        expires = dt.datetime.fromisoformat(built["expires_at"])
        hours = platform.settings.export_retention_hours
        left = expires - dt.datetime.now(dt.UTC)
        assert dt.timedelta(hours=hours) - dt.timedelta(minutes=5) < left
        assert left <= dt.timedelta(hours=hours)
        link = (await owner.post(f"{url}/link")).json()
        before = await _row(platform, team, eid)
        # a link never outlives the bundle
        await _set(platform, team, eid, "expires_at = now() + interval '1 minute'")
        short = (await owner.post(f"{url}/link")).json()
        assert dt.datetime.fromisoformat(short["expires_at"]) < dt.datetime.now(
            dt.UTC
        ) + dt.timedelta(minutes=2)
        link = short
        assert before["blob_id"] in set(platform.blobs.list_ids(team.project_id))

        # its time passes: before any sweep, neither a new link nor the old one works
        await _set(platform, team, eid, "expires_at = now() - interval '1 second'")
        r = await owner.post(f"{url}/link")
        assert r.status_code == 410 and "expired" in r.json()["detail"], r.text
        r = await owner.get(link["url"])
        assert r.status_code == 410 and "expired" in r.json()["detail"], r.text

        results = {r.project_id: r for r in await sweep_all(platform)}
        assert set(results) == {team.project_id, other.project_id}
        mine = results[team.project_id]
        assert (mine.expired, mine.bundles_deleted, mine.bundles_left) == (1, 1, 0)
        after = await _row(platform, team, eid)
        assert after["state"] == "expired"
        assert after["blob_id"] is None and after["token_hash"] is None
        assert before["blob_id"] not in set(platform.blobs.list_ids(team.project_id))
        assert (await owner.get(url)).json()["state"] == "expired"
        assert (await owner.get(link["url"])).status_code == 410
        r = await owner.get(team.url("/audit"), params={"limit": 200, "action": "export.expired"})
        events = r.json()["events"]
        assert [e["resource_id"] for e in events] == [eid]
        assert events[0]["actor_kind"] == "system"

        # another project's export, within its time, is untouched
        assert results[other.project_id].expired == 0
        theirs = await _row(platform, other, kept["export_id"])
        assert theirs["state"] == "ready"
        assert theirs["blob_id"] in set(platform.blobs.list_ids(other.project_id))
        # a second sweep has nothing left to do
        again = await sweep_project(platform, team.project_id)
        assert (again.expired, again.bundles_deleted, again.bundles_left) == (0, 0, 0)
        assert all(r.error is None for r in results.values())
    finally:
        await close_team(team)
        await close_team(other)


async def test_bundles_left_behind_are_deleted_once_even_after_a_store_failure(
    platform: Platform, server: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed export whose bundle stayed, and a downloaded one past the grace period, lose
    their bundles; a download within the grace period keeps it (the response may still be
    reading it). A store that cannot delete now leaves the bundle for the next sweep."""
    team, _ = await annotated_text_team(platform, server, marker())
    try:
        owner = team.clients["data_owner"]
        failed = await ready_export(team, platform)
        await _set(platform, team, failed["export_id"], "state = 'failed'")
        fresh = await ready_export(team, platform)
        old = await ready_export(team, platform)
        for export in (fresh, old):
            link = (await owner.post(team.url(f"/exports/{export['export_id']}/link"))).json()
            assert (await owner.get(link["url"])).status_code == 200
        await _set(platform, team, old["export_id"], "downloaded_at = now() - interval '2 days'")
        # (the download deleted its bundle when the response ended; blob_id is still set)
        blobs = {
            e["export_id"]: (await _row(platform, team, e["export_id"]))["blob_id"]
            for e in (failed, fresh, old)
        }
        assert all(blobs.values())

        real_delete = platform.blobs.delete

        def store_away(project_id: object, blob_id: str) -> None:
            raise BlobStoreError("the store is not answering")

        monkeypatch.setattr(platform.blobs, "delete", store_away)
        swept = await sweep_project(platform, team.project_id)
        assert (swept.expired, swept.bundles_deleted, swept.bundles_left) == (0, 0, 2)
        assert (await _row(platform, team, failed["export_id"]))["blob_id"] is not None
        assert blobs[failed["export_id"]] in set(platform.blobs.list_ids(team.project_id))

        monkeypatch.setattr(platform.blobs, "delete", real_delete)
        swept = await sweep_project(platform, team.project_id)
        assert (swept.expired, swept.bundles_deleted, swept.bundles_left) == (0, 2, 0)
        assert blobs[failed["export_id"]] not in set(platform.blobs.list_ids(team.project_id))
        assert (await _row(platform, team, failed["export_id"]))["blob_id"] is None
        assert (await _row(platform, team, old["export_id"]))["blob_id"] is None
        # within the grace period: left as it is
        assert (await _row(platform, team, fresh["export_id"]))["blob_id"] is not None
        swept = await sweep_project(platform, team.project_id)
        assert (swept.bundles_deleted, swept.bundles_left) == (0, 0)
    finally:
        await close_team(team)


async def test_exports_ready_before_expiry_existed_get_their_time_and_builds_are_left_alone(
    platform: Platform, server: ServerThread
) -> None:
    """A ready export without ``expires_at`` (built before the column existed) gets the full
    retention from the sweep that finds it; the blob of an export being built is its build's."""
    team, _ = await annotated_text_team(platform, server, marker())
    try:
        legacy = await ready_export(team, platform)
        building = await ready_export(team, platform)
        await _set(platform, team, legacy["export_id"], "expires_at = NULL")
        await _set(platform, team, building["export_id"], "state = 'building'")
        swept = await sweep_project(platform, team.project_id)
        assert (swept.expired, swept.bundles_deleted, swept.bundles_left) == (0, 0, 0)
        row = await _row(platform, team, legacy["export_id"])
        assert row["state"] == "ready" and row["expires_at"] is not None
        left = row["expires_at"] - dt.datetime.now(dt.UTC)
        hours = dt.timedelta(hours=platform.settings.export_retention_hours)
        assert hours - dt.timedelta(minutes=5) < left <= hours
        row = await _row(platform, team, building["export_id"])
        assert row["state"] == "building"
        assert row["blob_id"] in set(platform.blobs.list_ids(team.project_id))
    finally:
        await close_team(team)


async def test_a_project_that_cannot_be_swept_is_reported_and_the_others_are_swept(
    platform: Platform,
    server: ServerThread,
    monkeypatch: pytest.MonkeyPatch,
    only: Callable[..., None],
) -> None:
    from labelvault.export import expiry

    team, _ = await annotated_text_team(platform, server, marker())
    other, _ = await annotated_text_team(platform, server, marker())
    only(team, other)
    try:
        built = await ready_export(other, platform)
        await _set(platform, other, built["export_id"], "expires_at = now()")
        r = await team.clients["data_owner"].post(team.url("/exports"), json={"format": "jsonl"})
        assert r.status_code == 201, r.text  # an export: the project is swept
        real = expiry.sweep_project

        async def broken_for_one(p: Platform, project_id: object) -> expiry.SweepResult:
            if project_id == team.project_id:
                raise RuntimeError("this project's database is away")
            return await real(p, project_id)  # type: ignore[arg-type]

        monkeypatch.setattr(expiry, "sweep_project", broken_for_one)
        results = {r.project_id: r for r in await sweep_all(platform)}
        assert set(results) == {team.project_id, other.project_id}
        assert results[team.project_id].error == "RuntimeError"
        assert results[other.project_id].error is None
        assert results[other.project_id].expired == 1
    finally:
        await close_team(team)
        await close_team(other)


async def test_the_operator_sweeps_from_the_command_line(
    platform: Platform, server: ServerThread, settings: Settings, db_target: DatabaseTarget
) -> None:
    team, _ = await annotated_text_team(platform, server, marker())
    try:
        built = await ready_export(team, platform)
        await _set(platform, team, built["export_id"], "expires_at = now()")
        done = await asyncio.to_thread(
            subprocess.run,
            [LABELVAULT, "export", "sweep"],
            env=cli_env(settings, db_target),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        # (it sweeps every project of the test database: one left broken by another test
        # would make it exit 1, naming that project)
        assert done.returncode == 0 or str(team.project_id) not in done.stderr, done.stderr
        assert f"{team.project_id}: 1 expired, 1 bundle(s) deleted, 0 left" in done.stdout
        assert (await _row(platform, team, built["export_id"]))["state"] == "expired"
    finally:
        await close_team(team)


async def test_projects_that_never_exported_are_not_visited(
    platform: Platform,
    server: ServerThread,
    monkeypatch: pytest.MonkeyPatch,
    only: Callable[..., None],
) -> None:
    """The hourly sweep opens the pool only of projects whose exports table has ever held a
    row; a project's first request brings it in, and unreadable catalogs mean every project."""
    from labelvault.export import expiry

    team, _ = await annotated_text_team(platform, server, marker())
    quiet, _ = await annotated_text_team(platform, server, marker())
    never, _ = await annotated_text_team(platform, server, marker())
    only(team, quiet, never)
    try:
        built = await ready_export(team, platform)
        await _set(platform, team, built["export_id"], "expires_at = now()")
        visited: list[object] = []
        real = expiry.sweep_project

        async def spy(p: Platform, project_id: object) -> expiry.SweepResult:
            visited.append(project_id)
            return await real(p, project_id)  # type: ignore[arg-type]

        monkeypatch.setattr(expiry, "sweep_project", spy)
        results = await sweep_all(platform)
        assert visited == [team.project_id]
        assert [(r.project_id, r.expired) for r in results] == [(team.project_id, 1)]

        r = await quiet.clients["data_owner"].post(quiet.url("/exports"), json={"format": "csv"})
        assert r.status_code == 201, r.text
        visited.clear()
        await sweep_all(platform)
        assert set(visited) == {team.project_id, quiet.project_id}

        async def unreadable(p: Platform) -> None:
            return None

        monkeypatch.setattr(expiry, "_projects_with_exports", unreadable)
        visited.clear()
        await sweep_all(platform)
        assert set(visited) == {team.project_id, quiet.project_id, never.project_id}
    finally:
        for t in (team, quiet, never):
            await close_team(t)
