"""What a role may write cannot widen what it may read or decide (project step 6).

Each attack runs as SQL in the attacker's own database context, as if a route forgot a check:
an annotator re-pointing their task at another item or inventing a task, a requester approving
their own export, a manager switching two-person approval off.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest
from tests.integration.pipeline.conftest import Team

from labelvault.db.context import ProjectContext
from labelvault.platform import Platform

Denied = psycopg.errors.InsufficientPrivilege


async def test_an_annotator_cannot_repoint_or_invent_a_task(team: Team, platform: Platform) -> None:
    owner, a1 = team.clients["data_owner"], team.clients["annotator"]
    r = await owner.post(
        team.url("/imports"), content=b"mine\nnot mine\n", params={"format": "text"}
    )
    assert r.status_code == 201
    task = (await a1.post(team.url("/tasks/next"))).json()
    me = ProjectContext(team.users["annotator"].id, "annotator")
    system = ProjectContext(None, "system")
    async with platform.db.project_tx(team.project_id, system) as conn:
        cur = await conn.execute(
            "SELECT id FROM items WHERE id <> %s ORDER BY created_at LIMIT 1", [task["item_id"]]
        )
        row = await cur.fetchone()
    assert row is not None
    other_item = row[0]

    with pytest.raises(Denied):
        async with platform.db.project_tx(team.project_id, me) as conn:
            await conn.execute(
                # (another slot number: the same slot would already clash with a unique key)
                "UPDATE tasks SET item_id = %s, slot = 5 WHERE id = %s",
                [other_item, task["task_id"]],
            )
    with pytest.raises(Denied):
        async with platform.db.project_tx(team.project_id, me) as conn:
            await conn.execute(
                "INSERT INTO tasks (id, item_id, slot, assignee, state) "
                "VALUES (%s, %s, 7, %s, 'leased')",
                [uuid.uuid4(), other_item, team.users["annotator"].id],
            )
    with pytest.raises(Denied):  # an annotation for an item that is not their task's
        async with platform.db.project_tx(team.project_id, me) as conn:
            await conn.execute(
                "INSERT INTO annotations (id, task_id, item_id, annotator, result, state) "
                "VALUES (%s, %s, %s, %s, '\\x00', 'submitted')",
                [uuid.uuid4(), task["task_id"], other_item, team.users["annotator"].id],
            )
    # and the other item's content stays out of reach
    async with platform.db.project_tx(team.project_id, me) as conn:
        cur = await conn.execute("SELECT count(*) FROM items WHERE id = %s", [other_item])
        assert await cur.fetchone() == (0,)


async def test_export_approval_stays_a_second_persons_decision(
    team: Team, platform: Platform
) -> None:
    manager = team.clients["manager"]
    r = await manager.put(team.url("/settings"), json={"export_requires_approval": False})
    assert r.status_code == 403
    r = await manager.get(team.url("/settings"))
    assert r.json()["export_requires_approval"] is True
    requester = team.users["manager"].id
    with pytest.raises(Denied):  # the database refuses it too
        async with platform.db.project_tx(
            team.project_id, ProjectContext(requester, "manager")
        ) as conn:
            await conn.execute("UPDATE settings SET export_requires_approval = false")

    r = await manager.post(team.url("/exports"), json={"format": "jsonl"})
    assert r.status_code in (200, 201, 202), r.text
    export_id = r.json()["export_id"]
    with pytest.raises(Denied):  # the requester approving, even without naming anyone
        async with platform.db.project_tx(
            team.project_id, ProjectContext(requester, "manager")
        ) as conn:
            await conn.execute(
                "UPDATE exports SET state = 'approved', decided_at = now() WHERE id = %s",
                [export_id],
            )
    owner = team.users["data_owner"].id
    with pytest.raises(Denied):  # another member recording someone else as the approver
        async with platform.db.project_tx(
            team.project_id, ProjectContext(owner, "data_owner")
        ) as conn:
            await conn.execute(
                "UPDATE exports SET state = 'approved', approved_by = %s WHERE id = %s",
                [team.users["reviewer"].id, export_id],
            )
    with pytest.raises(Denied):  # nor can the request be re-attributed
        async with platform.db.project_tx(
            team.project_id, ProjectContext(owner, "data_owner")
        ) as conn:
            await conn.execute(
                "UPDATE exports SET requested_by = %s WHERE id = %s", [owner, export_id]
            )
    r = await team.clients["data_owner"].post(team.url(f"/exports/{export_id}/approve"))
    assert r.status_code == 200, r.text


async def test_an_exports_record_and_state_are_not_a_members_to_write(
    team: Team, platform: Platform
) -> None:
    """What was built, where it is and how long it is kept are the platform's to record; a
    member writes an export only as the routes do: a new request, a decision on a pending one,
    a link for and a download of a ready export of their own."""
    manager = team.clients["manager"]
    r = await manager.post(team.url("/exports"), json={"format": "jsonl"})
    assert r.status_code == 201, r.text
    export_id = r.json()["export_id"]
    requester = ProjectContext(team.users["manager"].id, "manager")
    other = ProjectContext(team.users["data_owner"].id, "data_owner")
    system = ProjectContext(None, "system")

    async def refused(who: ProjectContext, sql: str, params: list[object], why: str) -> None:
        with pytest.raises(Denied, match=why):
            async with platform.db.project_tx(team.project_id, who) as conn:
                await conn.execute(sql, params)

    async def refused_update(who: ProjectContext, assignment: str, why: str) -> None:
        await refused(who, f"UPDATE exports SET {assignment} WHERE id = %s", [export_id], why)

    # a new row is a request, nothing more: not approved (the project requires a second
    # person), not pointing at anyone's bundle for the sweep to delete, not carrying a link
    insert = (
        "INSERT INTO exports (id, requested_by, format, state, {col}) "
        "VALUES (%s, %s, 'jsonl', %s, {value})"
    )
    for state, col, value in [
        ("approved", "decided_at", "now()"),
        ("ready", "blob_id", "'another-exports-bundle'"),
        ("failed", "blob_id", "'another-exports-bundle'"),
        ("pending_approval", "download_token_hash", "'aa'"),
        ("pending_approval", "expires_at", "'infinity'"),
    ]:
        await refused(
            requester,
            insert.format(col=col, value=value),
            [uuid.uuid4(), team.users["manager"].id, state],
            "a new export is a request",
        )
    bundle = "the platform"
    move = "moves only by a decision or a download"
    for who, assignment, why in [
        (requester, "state = 'ready'", move),  # skipping the second person
        (other, "state = 'building'", move),
        (requester, "blob_id = 'someone-elses-bundle'", bundle),
        (requester, "download_token_hash = 'aa'", "requester of a ready export"),
        (requester, "manifest = '{}'::jsonb", bundle),
        (requester, "item_count = 7", bundle),
    ]:
        await refused_update(who, assignment, why)
    # the platform builds it; then its retention and its link stay within bounds
    async with platform.db.project_tx(team.project_id, system) as conn:
        await conn.execute(
            "UPDATE exports SET state = 'ready', blob_id = 'b', approved_by = %s, "
            "expires_at = now() + interval '1 hour' WHERE id = %s",
            [team.users["data_owner"].id, export_id],
        )
    for who, assignment, why in [
        (requester, "expires_at = 'infinity'", bundle),
        (other, "expires_at = NULL", bundle),
        (requester, "state = 'pending_approval'", move),
        (requester, "state = 'expired'", move),
        (other, "state = 'downloaded', downloaded_at = now()", move),  # not theirs
        # a context naming no user fails closed (nobody is the requester)
        (ProjectContext(None, "manager"), "state = 'downloaded', downloaded_at = now()", move),
        (other, "download_token_hash = 'bb'", "requester of a ready export"),
        (
            requester,
            "download_token_hash = 'cc', download_expires_at = now() + interval '1 day'",
            "10 minutes at most",
        ),
        (requester, "downloaded_at = now() - interval '2 days'", "downloaded when it is"),
    ]:
        await refused_update(who, assignment, why)
    # what the routes do still goes through: a link on a ready export, then its download
    async with platform.db.project_tx(team.project_id, requester) as conn:
        await conn.execute(
            "UPDATE exports SET download_token_hash = 'aa', "
            "download_expires_at = now() + interval '10 minutes' WHERE id = %s",
            [export_id],
        )
        await conn.execute(
            "UPDATE exports SET state = 'downloaded', downloaded_at = now(), "
            "download_token_hash = NULL, download_expires_at = NULL WHERE id = %s",
            [export_id],
        )
    await refused_update(requester, "state = 'ready'", move)  # and it stays downloaded
    async with platform.db.project_tx(team.project_id, system) as conn:
        cur = await conn.execute("SELECT state FROM exports WHERE id = %s", [export_id])
        assert await cur.fetchone() == ("downloaded",)


async def test_an_import_record_is_rewritten_only_by_the_platform(
    team: Team, platform: Platform
) -> None:
    """The platform re-seals an import's report after a key rotation; a manager or data owner
    (who may read the record) cannot rewrite its counts or its report."""
    r = await team.clients["data_owner"].post(
        team.url("/imports"), content=b"one\none\n", params={"format": "text"}
    )
    assert r.status_code == 201, r.text
    system = ProjectContext(None, "system")
    read = "SELECT items_added, duplicates, rejected, report FROM imports"
    async with platform.db.project_tx(team.project_id, system) as conn:
        before = await (await conn.execute(read)).fetchone()
    assert before is not None and before[:3] == (1, 1, 0)
    for who in ("manager", "data_owner"):
        ctx = ProjectContext(team.users[who].id, who)
        async with platform.db.project_tx(team.project_id, ctx) as conn:
            cur = await conn.execute("SELECT count(*) FROM imports")
            assert await cur.fetchone() == (1,)  # visible to them
            cur = await conn.execute(
                "UPDATE imports SET items_added = 0, rejected = 5, report = '\\x00'"
            )
            assert cur.rowcount == 0  # but not theirs to write
    async with platform.db.project_tx(team.project_id, system) as conn:
        assert await (await conn.execute(read)).fetchone() == before
        # the platform's own context may (it re-seals reports)
        cur = await conn.execute("UPDATE imports SET report = report")
        assert cur.rowcount == 1
