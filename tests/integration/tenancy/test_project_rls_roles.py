"""Least privilege inside a project, enforced by PostgreSQL itself.

These run the kind of query a route would run, but with no application check in front of it:
only the per-transaction context (user and role) decides what comes back.
"""

from __future__ import annotations

import uuid

import pytest
from psycopg import errors
from tests.support.platform import make_org, make_project

from labelvault.db.context import ProjectContext
from labelvault.platform import Platform


@pytest.fixture
async def seeded(platform: Platform) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID, list[uuid.UUID]]:
    org = await make_org(platform)
    project = await make_project(platform, org.id)
    alice, bob = uuid.uuid4(), uuid.uuid4()
    items = [uuid.uuid4() for _ in range(4)]
    async with platform.db.project_tx(project.id, ProjectContext(None, "system")) as conn:
        for n, item in enumerate(items):
            await conn.execute(
                "INSERT INTO items (id, kind, content, dedup_key, created_by) "
                "VALUES (%s, 'text', '\\x00', %s, %s)",
                [item, f"k{n}".encode(), alice],
            )
            await conn.execute(
                "INSERT INTO tasks (id, item_id, assignee, state) VALUES (%s, %s, %s, 'assigned')",
                [uuid.uuid4(), item, alice if n < 3 else bob],
            )
    return project.id, alice, bob, items


async def _count(platform: Platform, project: uuid.UUID, ctx: ProjectContext, sql: str) -> int:
    async with platform.db.project_tx(project, ctx) as conn:
        cur = await conn.execute(sql)
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def test_annotator_sees_only_their_own_tasks_and_items(
    platform: Platform, seeded: tuple
) -> None:  # type: ignore[type-arg]
    project, alice, bob, _ = seeded
    alice_ctx, bob_ctx = ProjectContext(alice, "annotator"), ProjectContext(bob, "annotator")
    assert await _count(platform, project, alice_ctx, "SELECT count(*) FROM tasks") == 3
    assert await _count(platform, project, alice_ctx, "SELECT count(*) FROM items") == 3
    assert await _count(platform, project, bob_ctx, "SELECT count(*) FROM tasks") == 1
    assert await _count(platform, project, bob_ctx, "SELECT count(*) FROM items") == 1
    stranger = ProjectContext(uuid.uuid4(), "annotator")
    assert await _count(platform, project, stranger, "SELECT count(*) FROM items") == 0


async def test_annotator_cannot_take_or_move_tasks(platform: Platform, seeded: tuple) -> None:  # type: ignore[type-arg]
    project, alice, bob, _ = seeded
    async with platform.db.project_tx(project, ProjectContext(alice, "annotator")) as conn:
        cur = await conn.execute("UPDATE tasks SET state = 'submitted' WHERE assignee = %s", [bob])
        assert cur.rowcount == 0  # invisible, so untouched
    with pytest.raises(errors.InsufficientPrivilege, match="row-level security"):
        async with platform.db.project_tx(project, ProjectContext(alice, "annotator")) as conn:
            await conn.execute("UPDATE tasks SET assignee = %s WHERE assignee = %s", [bob, alice])
    with pytest.raises(errors.InsufficientPrivilege, match="row-level security"):
        async with platform.db.project_tx(project, ProjectContext(alice, "annotator")) as conn:
            await conn.execute(
                "INSERT INTO items (id, kind, content, dedup_key, created_by) "
                "VALUES (gen_random_uuid(), 'text', '\\x00', '\\x99', %s)",
                [alice],
            )


@pytest.mark.parametrize("role", ["manager", "data_owner", "reviewer"])
async def test_managers_and_owners_get_no_raw_content(
    platform: Platform,
    seeded: tuple,  # type: ignore[type-arg]
    role: str,
) -> None:
    project, alice, _, _ = seeded
    ctx = ProjectContext(alice, role)
    assert await _count(platform, project, ctx, "SELECT count(*) FROM items") == 0
    tasks = await _count(platform, project, ctx, "SELECT count(*) FROM tasks")
    assert tasks == (4 if role in ("manager", "data_owner") else 0)


async def test_audit_trail_is_closed_to_annotators(platform: Platform, seeded: tuple) -> None:  # type: ignore[type-arg]
    project, alice, _, _ = seeded
    from labelvault.audit.record import audit_project

    async with platform.db.project_tx(project, ProjectContext(alice, "annotator")) as conn:
        await audit_project(conn, None, "item.read", resource_type="item")
    from labelvault.audit.sealer import seal_project

    await seal_project(platform.db, project)
    assert (
        await _count(
            platform,
            project,
            ProjectContext(alice, "annotator"),
            "SELECT count(*) FROM audit_events",
        )
        == 0
    )
    assert (
        await _count(
            platform, project, ProjectContext(alice, "manager"), "SELECT count(*) FROM audit_events"
        )
        >= 1
    )
    with pytest.raises(errors.InsufficientPrivilege):
        async with platform.db.project_tx(project, ProjectContext(alice, "manager")) as conn:
            await conn.execute("UPDATE audit_events SET body = body")


async def test_annotations_and_reviews_stay_with_their_people(
    platform: Platform, seeded: tuple
) -> None:  # type: ignore[type-arg]
    """Annotations are seen by their annotator and their reviewer only; nobody else."""
    project, alice, bob, _ = seeded
    reviewer, other_reviewer = uuid.uuid4(), uuid.uuid4()
    async with platform.db.project_tx(project, ProjectContext(None, "system")) as conn:
        cur = await conn.execute("SELECT id, item_id, assignee FROM tasks ORDER BY assignee")
        for task_id, item_id, assignee in await cur.fetchall():
            annotation = uuid.uuid4()
            await conn.execute(
                "INSERT INTO annotations (id, task_id, item_id, annotator, result, state) "
                "VALUES (%s, %s, %s, %s, '\\x00', 'in_review')",
                [annotation, task_id, item_id, assignee],
            )
            await conn.execute(
                "INSERT INTO reviews (id, annotation_id, annotator, reviewer) "
                "VALUES (%s, %s, %s, %s)",
                [
                    uuid.uuid4(),
                    annotation,
                    assignee,
                    reviewer if assignee == alice else other_reviewer,
                ],
            )
    count = "SELECT count(*) FROM annotations"
    assert await _count(platform, project, ProjectContext(alice, "annotator"), count) == 3
    assert await _count(platform, project, ProjectContext(bob, "annotator"), count) == 1
    assert await _count(platform, project, ProjectContext(reviewer, "reviewer"), count) == 3
    assert await _count(platform, project, ProjectContext(other_reviewer, "reviewer"), count) == 1
    for role in ("manager", "data_owner"):
        assert await _count(platform, project, ProjectContext(alice, role), count) == 0
        assert (
            await _count(
                platform, project, ProjectContext(alice, role), "SELECT count(*) FROM reviews"
            )
            == 0
        )
    # a reviewer's items: those of their own queue only
    assert (
        await _count(
            platform,
            project,
            ProjectContext(other_reviewer, "reviewer"),
            "SELECT count(*) FROM items",
        )
        == 1
    )
    # an annotator cannot route work to a reviewer for someone else's annotation
    with pytest.raises(errors.InsufficientPrivilege, match="row-level security"):
        async with platform.db.project_tx(project, ProjectContext(bob, "annotator")) as conn:
            await conn.execute(
                "INSERT INTO reviews (id, annotation_id, annotator, reviewer) "
                "SELECT gen_random_uuid(), id, %s, %s FROM annotations LIMIT 1",
                [alice, bob],
            )
