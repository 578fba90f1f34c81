"""Blobs no row refers to (what an import killed before its commit leaves in storage) are
deleted once they are older than the grace period, audited; referenced blobs (images of
committed items, export bundles) never are, nor young orphans, nor another project's blobs."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import os
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterable, Iterable
from pathlib import Path

import psycopg
import pytest
from tests.integration.export.export_support import (
    LABELVAULT,
    close_team,
    png_zip,
    ready_export,
)
from tests.integration.pipeline.conftest import Team, build_team
from tests.support.platform import ServerThread, cli_env

from labelvault.db.bootstrap import DatabaseTarget
from labelvault.db.context import ProjectContext
from labelvault.keys.values import project_cipher
from labelvault.platform import Platform
from labelvault.retention.orphans import RECONCILE_LOCK_KEY, reconcile_all, reconcile_project
from labelvault.settings import Settings
from labelvault.storage import BlobStoreError, LocalBlobStore
from labelvault.storage.base import BlobInfo

SYSTEM = ProjectContext(None, "system")
IMAGES = {"kind": "image_classification", "labels": ["cat", "dog"]}


def _later() -> dt.datetime:
    """A cutoff after every blob of the test: age no longer protects any of them."""
    return dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)


async def _image_team(platform: Platform, server: ServerThread) -> Team:
    """Three imported images and a built export bundle: four referenced blobs."""
    team = await build_team(platform, server, IMAGES)
    r = await team.clients["data_owner"].post(
        team.url("/imports"), content=png_zip(3), params={"format": "zip"}
    )
    assert r.status_code == 201, r.text
    await ready_export(team, platform)
    return team


async def _referenced(platform: Platform, project_id: uuid.UUID) -> set[str]:
    async with platform.db.project_tx(project_id, SYSTEM) as conn:
        cur = await conn.execute(
            "SELECT blob_id FROM items WHERE blob_id IS NOT NULL "
            "UNION SELECT blob_id FROM exports WHERE blob_id IS NOT NULL"
        )
        return {r[0] for r in await cur.fetchall()}


def _stored(platform: Platform, project_id: uuid.UUID) -> set[str]:
    return set(platform.blobs.list_ids(project_id))


async def _plant_orphans(platform: Platform, project_id: uuid.UUID, n: int) -> set[str]:
    """What an image import killed before its commit leaves: encrypted item blobs whose rows
    never became visible."""
    cipher = await project_cipher(platform.keys, project_id)
    planted = set()
    for _ in range(n):
        item_id = str(uuid.uuid4())
        blob_id = f"item-{item_id.replace('-', '')}"
        await asyncio.to_thread(
            cipher.put_blob, platform.blobs, "items", item_id, [os.urandom(300)], blob_id=blob_id
        )
        planted.add(blob_id)
    return planted


async def _orphan_events(team: Team) -> list[dict[str, object]]:
    r = await team.clients["manager"].get(
        team.url("/audit"), params={"limit": 50, "action": "blob.orphan_delete"}
    )
    assert r.status_code == 200, r.text
    events: list[dict[str, object]] = r.json()["events"]
    return events


async def test_orphans_are_deleted_and_audited_referenced_blobs_kept(
    platform: Platform, server: ServerThread
) -> None:
    team = await _image_team(platform, server)
    other = await _image_team(platform, server)
    try:
        pid = team.project_id
        referenced = await _referenced(platform, pid)
        assert len(referenced) == 4 and _stored(platform, pid) == referenced
        planted = await _plant_orphans(platform, pid, 3)
        theirs = await _plant_orphans(platform, other.project_id, 1)

        # young orphans wait for the grace period (an import may still be running)
        young = await reconcile_project(platform, pid)
        assert (young.blobs, young.orphans, young.deleted) == (7, [], 0)
        assert _stored(platform, pid) == referenced | planted

        # a dry run names exactly the orphans and deletes nothing
        dry = await reconcile_project(platform, pid, cutoff=_later(), dry_run=True)
        assert set(dry.orphans) == planted and dry.deleted == 0
        assert _stored(platform, pid) == referenced | planted
        assert await _orphan_events(team) == []

        done = await reconcile_project(platform, pid, cutoff=_later())
        assert set(done.orphans) == planted
        assert (done.deleted, done.left, done.error) == (3, 0, None)
        assert _stored(platform, pid) == referenced  # images and bundle untouched
        # the images still open: the annotator's task serves one
        r = await team.clients["annotator"].post(team.url("/tasks/next"))
        assert r.status_code == 200, r.text
        image = await team.clients["annotator"].get(team.url(f"/{r.json()['image_url']}"))
        assert image.status_code == 200 and image.content.startswith(b"\x89PNG")

        events = await _orphan_events(team)
        assert len(events) == 1
        details = events[0]["details"]
        assert isinstance(details, dict)
        assert details["orphans"] == 3 and set(str(details["blobs"]).split()) == planted
        listed = "\n".join(sorted(planted)).encode()
        assert details["blobs_sha256"] == hashlib.sha256(listed).hexdigest()
        assert details["blobs_not_named"] == 0
        assert events[0]["actor_kind"] == "system"

        # the other project's orphan is its own project's business
        assert theirs <= _stored(platform, other.project_id)
        # nothing left to do: no second event
        again = await reconcile_project(platform, pid, cutoff=_later())
        assert (again.orphans, again.deleted) == ([], 0)
        assert len(await _orphan_events(team)) == 1
    finally:
        await close_team(team)
        await close_team(other)


async def test_a_referenced_blob_survives_a_merge_gone_wrong(
    platform: Platform, server: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Were the listing and the references ever to come in different orders, the merge would
    call referenced blobs orphans: each is asked for again by id before it is deleted."""
    from labelvault.retention import orphans

    async def everything(
        listed: Iterable[BlobInfo], references: AsyncIterable[tuple[str, bool]]
    ) -> orphans.Comparison:
        async for _ in references:
            pass
        return orphans.Comparison(unreferenced=list(listed))

    monkeypatch.setattr(orphans, "compare", everything)
    team = await _image_team(platform, server)
    try:
        pid = team.project_id
        referenced = await _referenced(platform, pid)
        planted = await _plant_orphans(platform, pid, 2)
        done = await reconcile_project(platform, pid, cutoff=_later())
        assert set(done.orphans) == planted and done.deleted == 2
        assert _stored(platform, pid) == referenced
    finally:
        await close_team(team)


async def test_orphans_are_recorded_before_and_deleted_even_if_clearing_fails(
    platform: Platform, server: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    team = await _image_team(platform, server)
    try:
        pid = team.project_id
        planted = await _plant_orphans(platform, pid, 2)
        order: list[str] = []
        real_delete = platform.blobs.delete
        loop = asyncio.get_running_loop()

        def delete(project_id: uuid.UUID, blob_id: str) -> None:  # runs in a worker thread
            events = asyncio.run_coroutine_threadsafe(_orphan_events(team), loop).result()
            order.append(f"delete:{len(events)}")
            real_delete(project_id, blob_id)

        def clearing_fails(project_id: uuid.UUID, started_before: dt.datetime) -> int:
            raise BlobStoreError("the store went away")

        monkeypatch.setattr(platform.blobs, "delete", delete)
        monkeypatch.setattr(platform.blobs, "clear_incomplete", clearing_fails)
        done = await reconcile_project(platform, pid, cutoff=_later())
        assert (done.deleted, done.left, done.incomplete_cleared) == (2, 0, 0)
        assert order == ["delete:1", "delete:1"]  # the event was there before any deletion
        assert not planted & _stored(platform, pid)
    finally:
        await close_team(team)


async def test_nothing_is_deleted_while_an_import_runs(
    platform: Platform, server: ServerThread
) -> None:
    """An import holds the project's settings row from before its first blob to its commit: its
    blobs may be old and not yet referenced, so a run meanwhile deletes nothing there."""
    team = await _image_team(platform, server)
    try:
        pid = team.project_id
        planted = await _plant_orphans(platform, pid, 2)
        async with platform.db.project_tx(pid, SYSTEM) as importing:
            await importing.execute("SELECT dedup_key FROM settings FOR UPDATE")  # as an import
            waiting = await reconcile_project(platform, pid, cutoff=_later())
        assert waiting.import_running and (waiting.orphans, waiting.deleted) == ([], 0)
        assert planted <= _stored(platform, pid)
        assert await _orphan_events(team) == []
        done = await reconcile_project(platform, pid, cutoff=_later())
        assert not done.import_running and set(done.orphans) == planted and done.deleted == 2
    finally:
        await close_team(team)


async def test_a_lost_image_is_reported(platform: Platform, server: ServerThread) -> None:
    """An item whose image is not in the store is lost data: named in the result (and, from the
    command, in its exit status); a bundle already deleted after its download is not."""
    team = await _image_team(platform, server)
    try:
        pid = team.project_id
        async with platform.db.project_tx(pid, SYSTEM) as conn:
            cur = await conn.execute("SELECT min(blob_id) FROM items")
            row = await cur.fetchone()
            assert row is not None
            lost = str(row[0])
            cur = await conn.execute("SELECT blob_id FROM exports WHERE blob_id IS NOT NULL")
            bundles = [str(r[0]) for r in await cur.fetchall()]
        assert len(bundles) == 1
        clean = await reconcile_project(platform, pid)
        assert (clean.missing, clean.missing_unchecked) == ([], 0)
        for blob_id in (lost, *bundles):
            platform.blobs.delete(pid, blob_id)
        result = await reconcile_project(platform, pid, cutoff=_later())
        assert (result.missing, result.missing_unchecked) == ([lost], 0)
        assert (result.orphans, result.deleted) == ([], 0)
    finally:
        await close_team(team)


async def test_unfinished_writes_are_cleared_after_the_grace_period(
    platform: Platform, server: ServerThread
) -> None:
    if not isinstance(platform.blobs, LocalBlobStore):
        pytest.skip("the S3 store's pending uploads are tested with the stores")
    team = await _image_team(platform, server)
    try:
        pid = team.project_id
        directory = platform.blobs.project_dir(pid)
        # named as a put names them (a valid blob id never starts with a dot)
        stale, fresh = (
            Path(tempfile.mkstemp(prefix=f".item-{uuid.uuid4().hex}.", suffix=".tmp", dir=d)[1])
            for d in (directory, directory)
        )
        for path in (stale, fresh):
            path.write_bytes(b"half a blob")
        two_days_ago = time.time() - 2 * 86400
        os.utime(stale, (two_days_ago, two_days_ago))

        result = await reconcile_project(platform, pid)
        assert (result.incomplete_cleared, result.deleted) == (1, 0)
        assert not stale.exists() and fresh.exists()
        assert await _orphan_events(team) == []  # fragments of no blob: logged, not audited
        fresh.unlink()
    finally:
        await close_team(team)


async def test_the_operator_reconciles_from_the_command_line(
    platform: Platform, server: ServerThread, settings: Settings, db_target: DatabaseTarget
) -> None:
    if not isinstance(platform.blobs, LocalBlobStore):
        pytest.skip("the blob's age is set through the local store's file time")
    team = await _image_team(platform, server)
    try:
        pid = team.project_id
        referenced = await _referenced(platform, pid)
        old, young = sorted(await _plant_orphans(platform, pid, 2))
        two_days_ago = time.time() - 2 * 86400
        os.utime(platform.blobs.project_dir(pid) / old, (two_days_ago, two_days_ago))

        async def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return await asyncio.to_thread(
                subprocess.run,
                [LABELVAULT, "storage", "reconcile", *args],
                env=cli_env(settings, db_target),
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )

        # (it reconciles every project of the test database: one left broken by another test
        # would make it exit 1, naming that project)
        dry = await cli("--dry-run")
        assert dry.returncode == 0 or str(pid) not in dry.stderr, dry.stderr
        assert f"{pid}: {old}" in dry.stdout and young not in dry.stdout
        assert _stored(platform, pid) == referenced | {old, young}

        done = await cli()
        assert done.returncode == 0 or str(pid) not in done.stderr, done.stderr
        assert f"{pid}: 1 orphan(s) deleted, 0 left for the next run" in done.stdout
        assert _stored(platform, pid) == referenced | {young}

        refused = await cli("--grace-hours", "0")
        assert refused.returncode != 0 and "grace-hours" in refused.stderr

        # a lost image is an incident: named, and the exit status says so
        lost = min(b for b in referenced if b.startswith("item-"))
        platform.blobs.delete(pid, lost)
        incident = await cli("--dry-run")
        assert incident.returncode == 1, incident.stdout
        assert f"{pid}: 1 item image(s) missing from the store: {lost}" in incident.stderr
    finally:
        await close_team(team)


async def test_one_reconciliation_at_a_time(
    platform: Platform,
    settings: Settings,
    db_target: DatabaseTarget,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every host's primary server runs it daily: an advisory lock lets one run at a time (the
    others skip theirs), and the command says so instead of running a second one."""
    async with await psycopg.AsyncConnection.connect(db_target.owner_dsn, autocommit=True) as other:
        await other.execute("SELECT pg_advisory_lock(%s)", [RECONCILE_LOCK_KEY])
        assert await reconcile_all(platform) is None
        refused = await asyncio.to_thread(
            subprocess.run,
            [LABELVAULT, "storage", "reconcile", "--dry-run"],
            env=cli_env(settings, db_target),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert refused.returncode == 1 and "another reconciliation is running" in refused.stderr
        await other.execute("SELECT pg_advisory_unlock(%s)", [RECONCILE_LOCK_KEY])
    # a run (here over no project) takes the lock and gives it back when it ends
    from labelvault.retention import orphans

    async def no_projects(db: object, actor: object) -> list[object]:
        return []

    monkeypatch.setattr(orphans, "list_projects", no_projects)
    assert await reconcile_all(platform) == []
    async with await psycopg.AsyncConnection.connect(db_target.owner_dsn, autocommit=True) as c:
        cur = await c.execute("SELECT pg_try_advisory_lock(%s)", [RECONCILE_LOCK_KEY])
        row = await cur.fetchone()
        assert row is not None and row[0] is True
        await c.execute("SELECT pg_advisory_unlock(%s)", [RECONCILE_LOCK_KEY])
