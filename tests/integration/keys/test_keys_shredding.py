"""Crypto-shredding and project deletion: values become DataDestroyedError, keys leave no bytes,
other projects go on; deletion drops schema and role, purges blobs and signs a receipt."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import psycopg
import pytest
from tests.integration.keys.keys_support import (
    check_all_readable,
    cli_env,
    fill_project,
    new_project,
    read_value,
    run_cli,
)
from tests.support.platform import SYSTEM, add_member, make_user

from labelvault.audit.events import InvalidAuditEventError, parse_body
from labelvault.audit.signing import load_signer
from labelvault.crypto import DataDestroyedError, WrappedKey, data_key_context
from labelvault.db.bootstrap import DatabaseTarget
from labelvault.db.context import ControlContext
from labelvault.db.names import project_role, project_schema
from labelvault.kernel.actor import Actor, ActorKind
from labelvault.kernel.errors import ConflictError, NotFoundError, PermissionDeniedError
from labelvault.keys.receipts import DeletionReceipt, ReceiptError, verify_receipt
from labelvault.keys.service import KeyService
from labelvault.keys.values import project_cipher
from labelvault.platform import Platform
from labelvault.settings import Settings
from labelvault.tenancy.deletion import delete_project, shred_project


def _catalog(dsn: str, pid: uuid.UUID) -> tuple[bool, bool]:
    with psycopg.connect(dsn) as conn:
        schema = conn.execute(
            "SELECT 1 FROM pg_namespace WHERE nspname = %s", [project_schema(pid)]
        ).fetchone()
        role = conn.execute(
            "SELECT 1 FROM pg_roles WHERE rolname = %s", [project_role(pid)]
        ).fetchone()
    return schema is not None, role is not None


async def _keys_of(platform: Platform, scope: str) -> list[tuple[int, str, bytes]]:
    async with platform.db.control_tx(ControlContext.system_context()) as conn:
        cur = await conn.execute(
            "SELECT version, state, wrapped FROM lv_control.data_keys WHERE scope = %s "
            "ORDER BY version",
            [scope],
        )
        return [(int(r[0]), r[1], bytes(r[2])) for r in await cur.fetchall()]


async def test_shredding_destroys_every_value_and_nothing_else(platform: Platform) -> None:
    pid, org = await new_project(platform)
    other, _ = await new_project(platform, org)
    filled = await fill_project(platform, pid, org, items=3, blob_items=2)
    kept = await fill_project(platform, other, org, items=2)
    await platform.keys.rotate(str(pid))  # two versions, both in use
    cipher = await project_cipher(platform.keys, pid)  # held across the shred
    wrapped_before = await _keys_of(platform, str(pid))
    assert [len(w) > 0 for _, _, w in wrapped_before] == [True, True]

    destroyed = await shred_project(platform, SYSTEM, pid, "retention period ended")
    assert destroyed == [1, 2]

    # the control plane keeps tombstones without a single byte of key material
    assert [(v, s, len(w)) for v, s, w in await _keys_of(platform, str(pid))] == [
        (1, "destroyed", 0),
        (2, "destroyed", 0),
    ]
    assert platform.keys.cached(str(pid)) is None
    with pytest.raises(DataDestroyedError, match="data destroyed"):
        await project_cipher(platform.keys, pid)
    # every value and blob of the project: DataDestroyedError, never garbage
    for table, id_col, row, column in filled.values:
        stored = await read_value(platform, pid, table, id_col, row, column)
        with pytest.raises(DataDestroyedError, match="data destroyed"):
            cipher.decrypt(table, row, column, stored)
    for (table, row), (blob_id, _) in filled.blobs.items():
        with pytest.raises(DataDestroyedError):
            b"".join(cipher.get_blob(platform.blobs, table, row, blob_id))
    # a fresh process, and a backup of the wrapped keys taken before: unreadable all the same
    fresh = KeyService(platform.db, platform.keys.provider)
    with pytest.raises(DataDestroyedError):
        await fresh.keyring(str(pid))
    for version, _, wrapped in wrapped_before:
        with pytest.raises(DataDestroyedError):
            platform.keys.provider.unwrap(
                WrappedKey.from_bytes(wrapped), data_key_context(str(pid), version)
            )
    # rotation and new writes are refused too; shredding again is a no-op
    with pytest.raises(DataDestroyedError):
        await platform.keys.rotate(str(pid))
    assert await platform.keys.shred(str(pid)) == []
    # the other project of the same organization is untouched
    await check_all_readable(platform, kept)
    await fresh.close()


async def test_the_control_scope_cannot_be_shredded(platform: Platform) -> None:
    from labelvault.crypto import KeyProviderError

    with pytest.raises(KeyProviderError):
        await platform.keys.shred("control")
    assert (await platform.keys.keyring("control")).current is not None


async def test_delete_project_by_org_admin(
    platform: Platform, db_target: DatabaseTarget, settings: Settings
) -> None:
    pid, org = await new_project(platform)
    other, _ = await new_project(platform, org)
    filled = await fill_project(platform, pid, org, items=3, blob_items=2)
    kept = await fill_project(platform, other, org, items=1)
    admin = await make_user(platform, org, org_admin=True)
    member = await make_user(platform, org)
    await add_member(platform, pid, member, "manager")
    actor = Actor(kind=ActorKind.USER, user_id=admin.id, org_id=org, is_org_admin=True)
    blob_dir = settings.data_dir.resolve() / "blobs" / str(pid)
    assert blob_dir.is_dir()
    assert _catalog(db_target.owner_dsn, pid) == (True, True)

    # refused: a member who is not an admin, an admin of another organization, a bad reason
    with pytest.raises(PermissionDeniedError):
        await delete_project(
            platform, Actor(kind=ActorKind.USER, user_id=member.id, org_id=org), pid, "no"
        )
    with pytest.raises(NotFoundError):
        await delete_project(
            platform,
            Actor(
                kind=ActorKind.USER, user_id=uuid.uuid4(), org_id=uuid.uuid4(), is_org_admin=True
            ),
            pid,
            "x",
        )
    with pytest.raises(InvalidAuditEventError):
        await delete_project(platform, actor, pid, "line one\nline two")
    await check_all_readable(platform, filled)  # nothing happened

    receipt = await delete_project(platform, actor, pid, "contract ended")

    assert receipt.project_id == str(pid) and receipt.org_id == str(org)
    assert receipt.deleted_by == str(admin.id) and receipt.actor_kind == "user"
    assert receipt.reason == "contract ended"
    assert receipt.key_versions_destroyed == [1]
    assert receipt.provider_key_material_destroyed
    assert receipt.blobs_purged == 3
    for table, n in {
        "items": 3,
        "tasks": 3,
        "annotations": 3,
        "reviews": 3,
        "gold_answers": 3,
        "exports": 1,
    }.items():
        assert receipt.rows[table] == n
    assert receipt.rows_total >= 16 and receipt.memberships_removed == 1
    assert receipt.credential_deleted
    assert receipt.schema_dropped == project_schema(pid)

    # schema, role, blobs, credential, memberships: gone; the project is 'deleted'
    assert _catalog(db_target.owner_dsn, pid) == (False, False)
    assert not blob_dir.exists()
    with psycopg.connect(db_target.owner_dsn) as conn:
        status = conn.execute(
            "SELECT status FROM lv_control.projects WHERE id = %s", [pid]
        ).fetchone()
        creds = conn.execute(
            "SELECT count(*) FROM lv_control.project_credentials WHERE project_id = %s", [pid]
        ).fetchone()
        members = conn.execute(
            "SELECT count(*) FROM lv_control.memberships WHERE project_id = %s", [pid]
        ).fetchone()
    assert status == ("deleted",) and creds == (0,) and members == (0,)
    assert [(v, s, len(w)) for v, s, w in await _keys_of(platform, str(pid))] == [
        (1, "destroyed", 0)
    ]
    with pytest.raises(DataDestroyedError):
        await project_cipher(platform.keys, pid)

    # the receipt is signed by the deployment's key, and any change breaks it
    signer = await load_signer(platform)
    assert verify_receipt(receipt.note, [signer.verifier_key()]) == receipt
    forged = receipt.note.replace('"blobs_purged":3', '"blobs_purged":0')
    with pytest.raises(ReceiptError):
        verify_receipt(forged, [signer.verifier_key()])
    from labelvault.audit.checkpoint import Signer

    with pytest.raises(ReceiptError, match="not signed by any known key"):
        verify_receipt(receipt.note, [Signer.generate("labelvault-local").verifier_key()])

    # ... and is kept in the audit trail, from which it verifies again
    from labelvault.audit.sealer import seal_control

    await seal_control(platform.db)
    async with platform.db.control_tx(ControlContext.system_context()) as conn:
        cur = await conn.execute(
            "SELECT body FROM lv_control.audit_events ORDER BY seq DESC LIMIT 200"
        )
        bodies = [parse_body(bytes(r[0])) for r in await cur.fetchall()]
    events = [b for b in bodies if b["action"] == "project.delete" and b["project_id"] == str(pid)]
    assert len(events) == 1 and events[0]["privileged"]
    rebuilt = DeletionReceipt.from_audit_event(events[0])
    assert rebuilt == receipt
    assert verify_receipt(rebuilt.note, [signer.verifier_key()]) == receipt

    # other projects are untouched; a second delete is refused
    await check_all_readable(platform, kept)
    with pytest.raises(ConflictError):
        await delete_project(platform, actor, pid, "again")


async def test_interrupted_deletion_is_finished_by_a_rerun(
    platform: Platform, db_target: DatabaseTarget
) -> None:
    pid, org = await new_project(platform)
    await fill_project(platform, pid, org, items=2, blob_items=1)
    # as if a first attempt died after shredding
    await shred_project(platform, SYSTEM, pid, "first attempt")
    async with platform.db.control_tx(ControlContext.system_context()) as conn:
        await conn.execute(
            "UPDATE lv_control.projects SET status = 'deleting' WHERE id = %s", [pid]
        )
    receipt = await delete_project(platform, SYSTEM, pid, "finish it")
    assert receipt.key_versions_destroyed == [1] and receipt.rows["items"] == 2
    assert receipt.blobs_purged == 2
    assert _catalog(db_target.owner_dsn, pid) == (False, False)


async def test_drop_function_guards(platform: Platform) -> None:
    pid, _ = await new_project(platform)
    cases = [
        (ControlContext.system_context(), pid, "not deleting"),
        (ControlContext(None, None, False), pid, "only the platform"),
        (ControlContext.system_context(), uuid.uuid4(), "no such project"),
    ]
    for ctx, target, message in cases:
        with pytest.raises(psycopg.Error, match=message):
            async with platform.db.control_tx(ctx) as conn:
                await conn.execute("SELECT lv_control.drop_project(%s)", [target])
    # the project is intact
    await fill_project(platform, pid, (await _org_of(platform, pid)), items=1)


async def _org_of(platform: Platform, pid: uuid.UUID) -> uuid.UUID:
    async with platform.db.control_tx(ControlContext.system_context()) as conn:
        cur = await conn.execute("SELECT org_id FROM lv_control.projects WHERE id = %s", [pid])
        row = await cur.fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


async def test_drop_ends_only_the_project_roles_sessions(
    platform: Platform, db_target: DatabaseTarget
) -> None:
    pid, org = await new_project(platform)
    await fill_project(platform, pid, org, items=1)
    # a session of the project's role (as another server's pool would hold), idle in a
    # transaction holding a lock on one of its tables
    from labelvault.tenancy.deletion import _load_credential

    password = await _load_credential(platform, pid)
    assert password is not None
    from labelvault.db.dsn import derive_dsn

    dsn = derive_dsn(
        db_target.owner_dsn, user=project_role(pid), password=password, dbname=db_target.dbname
    )
    held = await psycopg.AsyncConnection.connect(dsn)
    await held.execute("SELECT set_config('lv.role', 'system', true)")
    await held.execute("SELECT count(*) FROM items")
    bystander = await psycopg.AsyncConnection.connect(db_target.owner_dsn)
    await bystander.execute("SELECT 1")
    receipt = await delete_project(platform, SYSTEM, pid, "cleanup")
    assert receipt.rows["items"] == 1
    with pytest.raises(psycopg.OperationalError):
        await held.execute("SELECT 1")
    assert (await (await bystander.execute("SELECT 42")).fetchone()) == (42,)
    await bystander.close()
    await held.close()


async def test_project_delete_cli_prints_a_signed_receipt(
    platform: Platform, settings: Settings, db_target: DatabaseTarget
) -> None:
    pid, org = await new_project(platform)
    await fill_project(platform, pid, org, items=2, blob_items=1)
    # not at a terminal and no --yes: refused, nothing deleted
    refused = await asyncio.to_thread(
        run_cli,
        ["project", "delete", "--project", str(pid), "--reason", "customer request"],
        cli_env(settings, db_target),
    )
    assert refused.returncode == 1 and "--yes" in refused.stderr
    assert _catalog(db_target.owner_dsn, pid) == (True, True)
    result = await asyncio.to_thread(
        run_cli,
        ["project", "delete", "--project", str(pid), "--reason", "customer request", "--yes"],
        cli_env(settings, db_target),
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["project_id"] == str(pid) and data["reason"] == "customer request"
    assert data["blobs_purged"] == 2 and data["rows"]["items"] == 2
    signer = await load_signer(platform)
    receipt = verify_receipt(data["signed_note"], [signer.verifier_key()])
    assert receipt.key_versions_destroyed == [1]
    assert data["signed_note"].startswith("labelvault-deletion-receipt/v1\n{")
    assert _catalog(db_target.owner_dsn, pid) == (False, False)
    blob_dir = Path(settings.data_dir).resolve() / "blobs" / str(pid)  # noqa: ASYNC240
    assert not await asyncio.to_thread(blob_dir.exists)
    again = await asyncio.to_thread(
        run_cli,
        ["project", "delete", "--project", str(pid), "--reason", "twice", "--yes"],
        cli_env(settings, db_target),
    )
    assert again.returncode == 1 and again.stderr.startswith("error: ")
