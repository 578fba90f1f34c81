"""Key rotation: KEK rotation (re-wrap only) and data-key rotation with re-encryption of every
registered column and blob, including a job killed part-way by SIGKILL and resumed."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from tests.integration.keys.keys_support import (
    check_all_readable,
    cli_env,
    fill_project,
    new_project,
    read_value,
    run_cli,
    start_cli,
    stored_versions,
)

from labelvault.crypto import (
    ROTATE_AFTER_ENCRYPTIONS,
    DataDestroyedError,
    peek_key_version,
)
from labelvault.db.bootstrap import DatabaseTarget
from labelvault.db.context import ControlContext
from labelvault.keys.rotation import key_status, pending_rotations, reencrypt_scope, rotate_scope
from labelvault.keys.values import project_cipher
from labelvault.platform import Platform, prepare_database
from labelvault.settings import Settings


async def _key_rows(platform: Platform, scope: str) -> list[tuple[int, str, int, str]]:
    async with platform.db.control_tx(ControlContext.system_context()) as conn:
        cur = await conn.execute(
            "SELECT version, state, length(wrapped), kek_id FROM lv_control.data_keys "
            "WHERE scope = %s ORDER BY version",
            [scope],
        )
        return [tuple(r) for r in await cur.fetchall()]


async def _rotation_rows(platform: Platform, scope: str) -> list[tuple[int, str, dict[str, Any]]]:
    async with platform.db.control_tx(ControlContext.system_context()) as conn:
        cur = await conn.execute(
            "SELECT to_version, state, progress FROM lv_control.key_rotations WHERE scope = %s "
            "ORDER BY to_version",
            [scope],
        )
        return [tuple(r) for r in await cur.fetchall()]


async def test_kek_rotation_by_cli_rewraps_without_touching_data(
    platform: Platform, settings: Settings, db_target: DatabaseTarget
) -> None:
    pid, org = await new_project(platform)
    filled = await fill_project(platform, pid, org, items=2)
    before = await _key_rows(platform, str(pid))
    stored_before = await read_value(platform, pid, "items", "id", filled.items[0], "content")

    result = await asyncio.to_thread(
        run_cli, ["keys", "rotate", "--kek"], cli_env(settings, db_target)
    )
    assert result.returncode == 0, result.stderr
    assert "re-wrapped" in result.stdout and "no data was re-encrypted" in result.stdout

    after = await _key_rows(platform, str(pid))
    assert [r[0] for r in after] == [r[0] for r in before]
    assert after[0][3] != before[0][3]  # the wrap moved to the new KEK
    assert after[0][3] == platform.keys.provider.current_kek_id(str(pid))
    # the data did not change, and still reads after the keyring is loaded again
    assert await read_value(platform, pid, "items", "id", filled.items[0], "content") == (
        stored_before
    )
    platform.keys.forget(str(pid))
    await check_all_readable(platform, filled)
    # every live data key of the deployment is on the current KEK (control included)
    async with platform.db.control_tx(ControlContext.system_context()) as conn:
        cur = await conn.execute(
            "SELECT DISTINCT kek_id FROM lv_control.data_keys WHERE state <> 'destroyed'"
        )
        keks = {r[0] for r in await cur.fetchall()}
    assert keks == {platform.keys.provider.current_kek_id()}


async def test_project_rotation_reencrypts_everything_and_retires(platform: Platform) -> None:
    pid, org = await new_project(platform)
    other, _ = await new_project(platform, org)
    filled = await fill_project(platform, pid, org, items=9, blob_items=3)
    untouched = await fill_project(platform, other, org, items=2)
    scope = str(pid)
    old_value = await read_value(platform, pid, "items", "id", filled.items[0], "content")
    assert await stored_versions(platform, filled) == {1}

    report = await rotate_scope(
        platform.db, platform.keys, platform.blobs, pid, batch_size=4, retire_grace_s=0
    )
    assert report.to_version == 2 and report.done
    assert report.retired == [1] and report.pending == []
    # 9 items x 6 columns (+ gold), the import report and 4 blobs, in batches of at most 4 rows
    assert report.total_reencrypted == 9 * 6 + 1 + 4
    assert report.batches >= (9 * 6) // 4
    assert await stored_versions(platform, filled) == {2}
    await check_all_readable(platform, filled)
    assert await _key_rows(platform, scope) == [
        (1, "destroyed", 0, (await _key_rows(platform, scope))[0][3]),
        (
            2,
            "active",
            (await _key_rows(platform, scope))[1][2],
            (await _key_rows(platform, scope))[1][3],
        ),
    ]
    assert [(v, s) for v, s, _ in await _rotation_rows(platform, scope)] == [(2, "done")]
    # a copy of a value on the destroyed version (a backup) no longer reads
    cipher = await project_cipher(platform.keys, pid)
    with pytest.raises(DataDestroyedError):
        cipher.decrypt("items", filled.items[0], "content", old_value)
    # the other project was not touched
    assert await stored_versions(platform, untouched) == {1}
    await check_all_readable(platform, untouched)
    # nothing left to do
    again = await reencrypt_scope(platform.db, platform.keys, platform.blobs, pid, retire_grace_s=0)
    assert again.total_reencrypted == 0 and again.done


async def test_nothing_moves_before_every_cache_has_the_new_key(platform: Platform) -> None:
    pid, org = await new_project(platform)
    filled = await fill_project(platform, pid, org, items=2)
    report = await rotate_scope(
        platform.db, platform.keys, platform.blobs, pid, retire_grace_s=3600
    )
    assert report.total_reencrypted == 0 and not report.done
    assert report.pending == [1] and report.wait_s > 3500
    assert await stored_versions(platform, filled) == {1}
    assert await pending_rotations(platform.db, str(pid)) == [str(pid)]
    # rerunning `rotate` resumes this rotation instead of starting version 3
    report = await rotate_scope(platform.db, platform.keys, platform.blobs, pid, retire_grace_s=0)
    assert report.to_version == 2 and report.done and report.retired == [1]
    assert report.total_reencrypted == 2 * 6 + 1 + 2  # (+ the import report)
    await check_all_readable(platform, filled)
    # a short grace is slept out when asked to
    await platform.keys.rotate(str(pid))
    started = time.monotonic()
    report = await reencrypt_scope(
        platform.db, platform.keys, platform.blobs, pid, retire_grace_s=1.0, wait=True
    )
    assert report.done and report.retired == [2] and time.monotonic() - started >= 0.5


async def test_automatic_rotation_leaves_a_job_that_finishes(platform: Platform) -> None:
    pid, org = await new_project(platform)
    filled = await fill_project(platform, pid, org, items=2)
    ring = await platform.keys.keyring(str(pid))
    ring.current.restore_usage(ROTATE_AFTER_ENCRYPTIONS)  # as if worn out
    cipher = await project_cipher(platform.keys, pid)  # the key service rotates here
    assert cipher.current_version == 2
    sealed = cipher.encrypt("items", uuid.uuid4(), "content", b"new")
    assert peek_key_version(sealed) == 2
    assert await pending_rotations(platform.db, str(pid)) == [str(pid)]
    report = await reencrypt_scope(
        platform.db, platform.keys, platform.blobs, pid, retire_grace_s=0
    )
    assert report.done and report.retired == [1]
    await check_all_readable(platform, filled)


async def _wait_for_batches(
    platform: Platform, scope: str, n: int, limit_s: float
) -> dict[str, Any]:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        rows = await _rotation_rows(platform, scope)
        running = [p for _, state, p in rows if state == "running"]
        if running and int(running[0].get("batches", 0)) >= n:
            return running[0]
        await asyncio.sleep(0.05)
    raise AssertionError("the rotation job made no progress")


async def test_rotation_killed_midway_resumes_by_cli(
    platform: Platform, settings: Settings, db_target: DatabaseTarget
) -> None:
    pid, org = await new_project(platform)
    filled = await fill_project(platform, pid, org, items=40, blob_items=2, blob_size=20_000)
    scope = str(pid)
    env = cli_env(settings, db_target)
    args = ["keys", "rotate", "--project", scope, "--batch-size", "5", "--retire-grace", "0"]

    proc = await asyncio.to_thread(start_cli, [*args, "--batch-delay", "0.3"], env)
    try:
        progress = await _wait_for_batches(platform, scope, 1, limit_s=120)
    finally:
        proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(proc.communicate)
    assert proc.returncode == -signal.SIGKILL
    assert progress["columns"]["items.content"]["done"] >= 5
    # part-way: both versions in use, everything still readable
    platform.keys.forget(scope)
    assert await stored_versions(platform, filled) == {1, 2}
    await check_all_readable(platform, filled)
    assert [r[1] for r in await _key_rows(platform, scope)] == ["retired", "active"]

    result = await asyncio.to_thread(run_cli, args, env)
    assert result.returncode == 0, result.stderr
    assert "resumed" in result.stdout and "rotation complete" in result.stdout
    assert "destroyed old versions: 1" in result.stdout
    platform.keys.forget(scope)
    assert await stored_versions(platform, filled) == {2}
    await check_all_readable(platform, filled)
    assert [r[1] for r in await _key_rows(platform, scope)] == ["destroyed", "active"]
    rows = await _rotation_rows(platform, scope)
    assert [(v, s) for v, s, _ in rows] == [(2, "done")]
    # the resumed run did not redo the first run's batches
    total = sum(c["done"] for c in rows[0][2]["columns"].values())
    assert total == 40 * 6 + 1  # (+ the import report)

    status = await asyncio.to_thread(run_cli, ["keys", "status", "--project", scope, "--json"], env)
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert [(v["version"], v["state"]) for v in data["versions"]] == [
        (1, "destroyed"),
        (2, "active"),
    ]
    assert data["rotations"][0]["state"] == "done"
    assert data["rotations"][0]["reencrypted"] == 40 * 6 + 1 + 3
    table = await asyncio.to_thread(run_cli, ["keys", "status"], env)
    assert table.returncode == 0 and scope in table.stdout and "control" in table.stdout


async def test_two_jobs_on_one_scope_do_not_run_together(platform: Platform) -> None:
    pid, org = await new_project(platform)
    await fill_project(platform, pid, org, items=6)
    await platform.keys.rotate(str(pid))
    first = asyncio.create_task(
        reencrypt_scope(
            platform.db,
            platform.keys,
            platform.blobs,
            pid,
            batch_size=1,
            retire_grace_s=0,
            batch_delay_s=0.05,
        )
    )
    await asyncio.sleep(0.3)
    from labelvault.kernel.errors import ConflictError

    with pytest.raises(ConflictError, match="already running"):
        await reencrypt_scope(platform.db, platform.keys, platform.blobs, pid)
    assert (await first).done


async def test_status_lists_versions_without_key_material(platform: Platform) -> None:
    pid, _ = await new_project(platform)
    await project_cipher(platform.keys, pid)
    versions, _ = await key_status(platform.db, str(pid))
    assert [(v.version, v.state) for v in versions] == [(1, "active")]
    assert "wrapped" not in repr(versions[0]).lower()


@pytest.fixture()
async def own_database(settings: Settings) -> AsyncIterator[Platform]:
    """A platform on a database of its own in the session's cluster: rotating the control
    plane's key there cannot disturb the other tests' servers and their key caches."""
    own = Settings(
        data_dir=settings.data_dir,
        database_name=f"lvkeys{uuid.uuid4().hex[:10]}",
        port=0,
        log_level="warning",
        database_url=settings.database_url,
    )
    target, _ = await asyncio.to_thread(prepare_database, own)
    p = Platform.create(own, target)
    await p.open()
    try:
        yield p
    finally:
        await p.close()


async def test_control_plane_rotation(own_database: Platform) -> None:
    platform = own_database
    pid, org = await new_project(platform)
    filled = await fill_project(platform, pid, org, items=1)
    before = await platform.keys.keyring("control")
    old = before.current.version
    report = await rotate_scope(platform.db, platform.keys, None, None, retire_grace_s=0)
    assert report.to_version == old + 1
    assert report.done and report.retired == [old], report.as_dict()
    assert report.reencrypted["project_credentials.secret"] >= 1
    # every sealed control-plane value is on the new version and still opens
    with psycopg.connect(platform.target.owner_dsn) as conn:
        heads = conn.execute(
            "SELECT DISTINCT substring(secret from 2 for 4) FROM lv_control.project_credentials"
        ).fetchall()
    assert {int.from_bytes(bytes(h[0]), "big") for h in heads} == {old + 1}
    await platform.db.projects.forget(pid)  # a fresh pool: the credential unseals
    await check_all_readable(platform, filled)
