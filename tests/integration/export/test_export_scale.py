"""A 100,000-item export: built with bounded memory, nothing readable at rest, and a build whose
worker process is killed (SIGKILL) mid-way is picked up by another worker and completes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.integration.export.export_support import LABELVAULT, cli_env, marker, start_worker
from tests.support.platform import make_org, make_project

from labelvault.db.bootstrap import DatabaseTarget
from labelvault.db.context import ProjectContext
from labelvault.export.build import build_export
from labelvault.export.job import defer_build
from labelvault.jobs.schema import JOB_SCHEMA
from labelvault.keys.values import project_cipher
from labelvault.platform import Platform
from labelvault.settings import Settings

SYSTEM = ProjectContext(None, "system")
ITEMS = int(os.environ.get("LV_TEST_EXPORT_ITEMS", "100000"))
BATCH = 5_000


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/self/status")


def reset_peak_rss() -> int:
    """Reset the process's peak RSS (Linux: ``clear_refs`` 5) and return the current RSS."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kib("VmRSS")


def peak_rss() -> int:
    return _status_kib("VmHWM")


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
        contents = [
            cipher.encrypt("items", i, "content", t.encode())
            for i, t in zip(items, texts, strict=True)
        ]
        results = [
            cipher.encrypt_json(
                "annotations", a, "result", {"labels": ["spam" if n % 2 else "ham"]}
            )
            for n, a in enumerate(annotations)
        ]
        async with platform.db.project_tx(project.id, SYSTEM) as conn:
            await conn.execute(
                "INSERT INTO items (id, kind, content, dedup_key, created_by, text_length) "
                "SELECT u.id, 'text', u.content, u.dk, %s, u.len FROM unnest(%s::uuid[], "
                "%s::bytea[], %s::bytea[], %s::int[]) AS u(id, content, dk, len)",
                [
                    requester,
                    items,
                    contents,
                    [os.urandom(32) for _ in items],
                    [len(t) for t in texts],
                ],
            )
            await conn.execute(
                "INSERT INTO tasks (id, item_id, slot, assignee, state, origin) "
                "SELECT u.id, u.item, 0, %s, 'accepted', 'auto' "
                "FROM unnest(%s::uuid[], %s::uuid[]) AS u(id, item)",
                [annotator, tasks, items],
            )
            await conn.execute(
                "INSERT INTO annotations (id, task_id, item_id, annotator, result, state) "
                "SELECT u.id, u.task, u.item, %s, u.result, 'accepted' "
                "FROM unnest(%s::uuid[], %s::uuid[], %s::uuid[], %s::bytea[]) "
                "AS u(id, task, item, result)",
                [annotator, annotations, tasks, items, results],
            )
    async with platform.db.project_tx(project.id, SYSTEM) as conn:
        await conn.execute(
            "UPDATE settings SET label_schema = %s::jsonb",
            ['{"kind": "text_classification", "labels": ["spam", "ham"]}'],
        )
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
            [export_id, big.requester, fmt, uuid.uuid4()],
        )
    return export_id


async def _export_row(platform: Platform, big: BigProject, export_id: uuid.UUID) -> dict[str, Any]:
    async with platform.db.project_tx(big.project_id, SYSTEM) as conn:
        cur = await conn.execute(
            "SELECT state, item_count, blob_id, manifest FROM exports WHERE id = %s", [export_id]
        )
        row = await cur.fetchone()
    assert row is not None
    return {"state": row[0], "item_count": row[1], "blob_id": row[2], "manifest": row[3]}


@pytest.mark.slow
async def test_100k_items_stream_with_bounded_memory(
    platform: Platform, big: BigProject, settings: Settings
) -> None:
    export_id = await _approved_export(platform, big, "jsonl")
    base = reset_peak_rss()
    started = time.monotonic()
    manifest = await build_export(platform, big.project_id, export_id)
    elapsed = time.monotonic() - started
    growth = peak_rss() - base
    assert manifest is not None
    assert manifest["counts"]["records"] == ITEMS
    size = manifest["bundle"]["bytes"]
    assert size > ITEMS * 300
    # the bundle never sits in memory: one batch and one chunk at a time
    assert growth < size / 5, (growth, size)
    print(f"100k export: {size} bytes in {elapsed:.1f}s, peak RSS growth {growth} bytes")
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
            tail = chunk[-len(needle) :]


@pytest.mark.slow
async def test_a_killed_worker_job_is_picked_up_again(
    platform: Platform,
    big: BigProject,
    settings: Settings,
    db_target: DatabaseTarget,
    tmp_path: Path,
) -> None:
    export_id = await _approved_export(platform, big, "csv")
    queue = f"crash-{uuid.uuid4().hex[:8]}"  # no other worker serves this queue
    await defer_build(platform.jobs, big.project_id, export_id, queue=queue)
    env = cli_env(settings, db_target)
    args = (
        "--queue",
        queue,
        "--heartbeat-seconds",
        "0.5",
        "--stalled-after-seconds",
        "3",
        "--poll-seconds",
        "0.5",
        "--concurrency",
        "1",
    )
    log = tmp_path / "workers.log"

    def output() -> str:
        return log.read_text(errors="replace")[-3000:]

    first = start_worker(env, log, *args)
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 120
        while True:  # wait until the build is well under way
            row = await _export_row(platform, big, export_id)
            if row["state"] == "building" and (row["item_count"] or 0) > 0:
                break
            assert first.poll() is None, output()
            assert loop.time() < deadline, (row, output())
            await asyncio.sleep(0.1)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
        first.wait()
    row = await _export_row(platform, big, export_id)
    assert row["state"] == "building" and row["item_count"] < ITEMS
    interrupted_blob = row["blob_id"]
    app = await platform.jobs.app()
    async with app.connector.pool.connection() as conn:  # type: ignore[attr-defined]
        cur = await conn.execute(
            f"SELECT status, attempts FROM {JOB_SCHEMA}.procrastinate_jobs WHERE queue_name = %s",
            [queue],
        )
        assert await cur.fetchall() == [("doing", 0)]

    second = start_worker(env, log, *args)
    try:
        deadline = asyncio.get_running_loop().time() + 240
        while True:
            row = await _export_row(platform, big, export_id)
            if row["state"] in ("ready", "failed"):
                break
            assert second.poll() is None, output()
            assert asyncio.get_running_loop().time() < deadline, (row, output())
            await asyncio.sleep(0.25)
    finally:
        second.send_signal(signal.SIGTERM)
        try:
            second.wait(timeout=60)
        except subprocess.TimeoutExpired:
            second.kill()
            second.wait()
    err = output()
    assert row["state"] == "ready", err
    assert row["item_count"] == ITEMS and row["manifest"]["counts"]["records"] == ITEMS
    assert row["blob_id"] != interrupted_blob
    assert not platform.blobs.exists(big.project_id, interrupted_blob)
    assert second.returncode == 0, err
    async with app.connector.pool.connection() as conn:  # type: ignore[attr-defined]
        cur = await conn.execute(
            f"SELECT status, attempts FROM {JOB_SCHEMA}.procrastinate_jobs WHERE queue_name = %s",
            [queue],
        )
        rows = await cur.fetchall()
    assert rows == [("succeeded", 2)]

    # progress and result through the CLI too
    shown = await asyncio.to_thread(
        subprocess.run,
        [
            LABELVAULT,
            "export",
            "status",
            "--project",
            str(big.project_id),
            "--export",
            str(export_id),
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)[0]
    assert status["state"] == "ready" and status["item_count"] == ITEMS
    assert big.mark not in shown.stdout
