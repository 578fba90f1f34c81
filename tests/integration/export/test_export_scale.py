"""A 100,000-item export: built with bounded memory, nothing readable at rest, and a build whose
worker process is killed (SIGKILL) mid-way is picked up by another worker and completes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import tracemalloc
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from labelvault.db.bootstrap import DatabaseTarget
from labelvault.db.context import ProjectContext
from labelvault.export.build import build_export
from labelvault.export.job import defer_build
from labelvault.jobs.schema import JOB_SCHEMA
from labelvault.keys.values import project_cipher
from labelvault.platform import Platform
from labelvault.settings import Settings
from tests.integration.export.export_support import cli_env, marker, start_worker
from tests.support.platform import make_org, make_project

SYSTEM = ProjectContext(None, "system")
ITEMS = int(os.environ.get("LV_TEST_EXPORT_ITEMS", "100000"))
BATCH = 5_000


@dataclass
class BigProject:
    project_id: uuid.UUID
    mark: str
    requester: uuid.UUID


async def _insert_big_project(platform: Platform) -> BigProject:
    org = await make_org(platform)
    project = await make_project(platform, org.id)
    mark = marker()
    cipher = await project_cipher(platform.keys, project.id)
    annotator, requester = uuid.uuid4(), uuid.uuid4()
    filler = "lorem ipsum dolor sit amet " * 12
    for start in range(0, ITEMS, BATCH):
        items = [uuid.uuid4() for _ in range(BATCH)]
        tasks = [uuid.uuid4() for _ in range(BATCH)]
        annotations = [uuid.uuid4() for _ in range(BATCH)]
        texts = [f"{mark} item {start + n} {filler}" for n in range(BATCH)]
        contents = [cipher.encrypt("items", i, "content", t.encode())
                    for i, t in zip(items, texts, strict=True)]
        results = [cipher.encrypt_json("annotations", a, "result",
                                       {"labels": ["spam" if n % 2 else "ham"]})
                   for n, a in enumerate(annotations)]
        async with platform.db.project_tx(project.id, SYSTEM) as conn:
            await conn.execute(
                "INSERT INTO items (id, kind, content, dedup_key, created_by, text_length) "
                "SELECT u.id, 'text', u.content, u.dk, %s, u.len FROM unnest(%s::uuid[], "
                "%s::bytea[], %s::bytea[], %s::int[]) AS u(id, content, dk, len)",
                [requester, items, contents, [os.urandom(32) for _ in items],
                 [len(t) for t in texts]])
            await conn.execute(
                "INSERT INTO tasks (id, item_id, slot, assignee, state, origin) "
                "SELECT u.id, u.item, 0, %s, 'accepted', 'auto' "
                "FROM unnest(%s::uuid[], %s::uuid[]) AS u(id, item)",
                [annotator, tasks, items])
            await conn.execute(
                "INSERT INTO annotations (id, task_id, item_id, annotator, result, state) "
                "SELECT u.id, u.task, u.item, %s, u.result, 'accepted' "
                "FROM unnest(%s::uuid[], %s::uuid[], %s::uuid[], %s::bytea[]) "
                "AS u(id, task, item, result)",
                [annotator, annotations, tasks, items, results])
    async with platform.db.project_tx(project.id, SYSTEM) as conn:
        await conn.execute("UPDATE settings SET label_schema = %s::jsonb",
                           ['{"kind": "text_classification", "labels": ["spam", "ham"]}'])
    return BigProject(project.id, mark, requester)


@pytest.fixture(scope="module")
async def big(platform: Platform) -> BigProject:
    return await _insert_big_project(platform)


async def _approved_export(platform: Platform, big: BigProject, fmt: str) -> uuid.UUID:
    export_id = uuid.uuid4()
    async with platform.db.project_tx(big.project_id, SYSTEM) as conn:
        await conn.execute(
            "INSERT INTO exports (id, requested_by, format, only_accepted, state, approved_by, "
            "decided_at) VALUES (%s, %s, %s, true, 'approved', %s, now())",
            [export_id, big.requester, fmt, uuid.uuid4()])
    return export_id


async def _export_row(platform: Platform, big: BigProject, export_id: uuid.UUID
                      ) -> dict[str, Any]:
    async with platform.db.project_tx(big.project_id, SYSTEM) as conn:
        cur = await conn.execute(
            "SELECT state, item_count, blob_id, manifest FROM exports WHERE id = %s",
            [export_id])
        row = await cur.fetchone()
    assert row is not None
    return {"state": row[0], "item_count": row[1], "blob_id": row[2], "manifest": row[3]}


@pytest.mark.slow
async def test_100k_items_stream_with_bounded_memory(
    platform: Platform, big: BigProject, settings: Settings
) -> None:
    export_id = await _approved_export(platform, big, "jsonl")
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        manifest = await build_export(platform, big.project_id, export_id)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert manifest is not None
    assert manifest["counts"]["records"] == ITEMS
    size = manifest["bundle"]["bytes"]
    assert size > ITEMS * 300
    growth = peak - base
    # the bundle never sits in memory: one batch and one chunk at a time
    assert growth < size / 5, (growth, size)
    row = await _export_row(platform, big, export_id)
    assert row["state"] == "ready" and row["item_count"] == ITEMS

    # at rest, the bundle is ciphertext: no marker in the blob file, not even in part
    path = settings.data_dir.resolve() / "blobs" / big.project_id.hex / row["blob_id"]
    if not path.exists():  # layout of the local store: find the blob by name
        found = list((settings.data_dir.resolve() / "blobs").rglob(row["blob_id"]))
        assert found, "bundle blob not found on disk"
        path = found[0]
    assert path.stat().st_size > size
    needle = big.mark.encode()
    tail = b""
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            assert needle not in tail + chunk
            tail = chunk[-len(needle):]


@pytest.mark.slow
async def test_a_killed_worker_job_is_picked_up_again(
    platform: Platform, big: BigProject, settings: Settings, db_target: DatabaseTarget
) -> None:
    export_id = await _approved_export(platform, big, "csv")
    queue = f"crash-{uuid.uuid4().hex[:8]}"  # no other worker serves this queue
    await defer_build(platform.jobs, big.project_id, export_id, queue=queue)
    env = cli_env(settings, db_target)
    args = ("--queue", queue, "--heartbeat-seconds", "0.5", "--stalled-after-seconds", "3",
            "--poll-seconds", "0.5", "--concurrency", "1")
    first = start_worker(env, *args)
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 120
        while True:  # wait until the build is well under way
            row = await _export_row(platform, big, export_id)
            if row["state"] == "building" and (row["item_count"] or 0) > 0:
                break
            assert first.poll() is None, first.communicate()
            assert loop.time() < deadline, row
            await asyncio.sleep(0.1)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
        first.communicate()
    row = await _export_row(platform, big, export_id)
    assert row["state"] == "building" and row["item_count"] < ITEMS
    interrupted_blob = row["blob_id"]
    app = await platform.jobs.app()
    async with app.connector.pool.connection() as conn:  # type: ignore[attr-defined]
        cur = await conn.execute(
            f"SELECT status, attempts FROM {JOB_SCHEMA}.procrastinate_jobs WHERE queue_name = %s",
            [queue])
        assert await cur.fetchall() == [("doing", 0)]

    second = start_worker(env, *args)
    try:
        deadline = asyncio.get_running_loop().time() + 240
        while True:
            row = await _export_row(platform, big, export_id)
            if row["state"] in ("ready", "failed"):
                break
            assert second.poll() is None, second.communicate()
            assert asyncio.get_running_loop().time() < deadline, row
            await asyncio.sleep(0.25)
    finally:
        second.send_signal(signal.SIGTERM)
        try:
            second.wait(timeout=60)
        except subprocess.TimeoutExpired:
            second.kill()
        _, err = second.communicate()
    assert row["state"] == "ready", err
    assert row["item_count"] == ITEMS and row["manifest"]["counts"]["records"] == ITEMS
    assert row["blob_id"] != interrupted_blob
    assert not platform.blobs.exists(big.project_id, interrupted_blob)
    assert second.returncode == 0, err
    async with app.connector.pool.connection() as conn:  # type: ignore[attr-defined]
        cur = await conn.execute(
            f"SELECT status, attempts FROM {JOB_SCHEMA}.procrastinate_jobs WHERE queue_name = %s",
            [queue])
        rows = await cur.fetchall()
    assert rows == [("succeeded", 2)]
