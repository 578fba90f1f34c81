"""The annotator's loop: next task (one at a time, leased), submit, revise, skip, own history.

Everything runs in the annotator's own database context: the rows they may touch are decided by
row-level security, and handing out an unassigned slot goes through ``claim_next_task()``.
Each task served and each annotation written is audited in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, LiteralString

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from labelvault.access.scope import ProjectScope
from labelvault.annotation.label_schema import validate_result
from labelvault.annotation.settings import (
    READ_SETTINGS,
    ProjectSettings,
    read_settings,
    settings_from_rows,
)
from labelvault.audit.record import audit_project, build_event, project_append
from labelvault.db.runtime import RuntimeDatabase, Statement, commit_with
from labelvault.kernel.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
)
from labelvault.kernel.ids import parse_id
from labelvault.keys.service import KeyService
from labelvault.keys.values import ProjectCipher, project_cipher

_CLAIM: Statement = ("SELECT task_id FROM claim_next_task()", [])
_TASK_FOR_SUBMIT: LiteralString = (
    "SELECT t.id, t.item_id, t.state, t.lease_expires_at, i.kind, i.content, i.width, "
    "i.height, a.id AS annotation_id, a.state AS annotation_state, a.version "
    "FROM tasks t JOIN items i ON i.id = t.item_id "
    "LEFT JOIN annotations a ON a.task_id = t.id WHERE t.id = %s FOR UPDATE OF t"
)
_TASK_SUBMITTED: LiteralString = (
    "UPDATE tasks SET state = 'submitted', lease_expires_at = NULL, updated_at = now() "
    "WHERE id = %s"
)
# the project's live reviewers, or a coroutine loading them only when a review is needed
ReviewerSource = list[uuid.UUID] | Callable[[], Awaitable[list[uuid.UUID]]]


@dataclass(frozen=True)
class TaskView:
    """One task as its annotator sees it: the content, and their own current answer."""

    task_id: uuid.UUID
    item_id: uuid.UUID
    kind: str
    text: str | None
    image_blob: str | None
    width: int | None
    height: int | None
    label_schema: dict[str, Any] | None
    lease_expires_at: dt.datetime | None
    annotation: dict[str, Any] | None = None
    annotation_state: str | None = None
    review_comment: str | None = None


# an annotation its annotator may still revise (and so reopen its task to see the content)
REVISABLE: Final = ("submitted", "in_review", "rejected")
_VIEW: LiteralString = (
    "SELECT t.id AS task_id, t.item_id, t.state AS task_state, t.lease_expires_at, "
    "t.lease_expires_at > now() AS lease_live, i.kind, i.content, i.width, "
    "i.height, a.id AS annotation_id, a.result, a.state AS annotation_state, "
    "v.id AS review_id, v.comment "
    "FROM tasks t JOIN items i ON i.id = t.item_id "
    "LEFT JOIN annotations a ON a.task_id = t.id "
    "LEFT JOIN reviews v ON v.annotation_id = a.id AND v.state = 'rejected' "
)
# the caller's current lease, chosen exactly as claim_next_task() chooses it (oldest first;
# now() is the transaction's start, the same instant the claim saw)
_VIEW_OF_CURRENT_LEASE: LiteralString = (
    _VIEW + "WHERE t.id = (SELECT c.id FROM tasks c WHERE c.assignee = lv_user() "
    "AND c.state = 'leased' AND c.lease_expires_at > now() ORDER BY c.leased_at LIMIT 1)"
)


async def _task_view(
    conn: AsyncConnection[Any], cipher: ProjectCipher, settings: ProjectSettings, task_id: uuid.UUID
) -> TaskView:
    cur = await conn.cursor(row_factory=dict_row).execute(_VIEW + "WHERE t.id = %s", [task_id])
    row = await cur.fetchone()
    if row is None:
        raise NotFoundError("task not found")
    # content is served one task at a time: the one held now, or one whose answer may still
    # change; never one waiting in the queue, nor one whose answer has been decided
    held = row["task_state"] == "leased" and row["lease_live"]
    if not held and row["annotation_state"] not in REVISABLE:
        raise PermissionDeniedError(
            "this task is not open to you: its answer has been decided, its lease has run out, "
            "or it is not yet yours to work on (ask for your next task)"
        )
    return _view_of(row, cipher, settings)


def _view_of(row: dict[str, Any], cipher: ProjectCipher, settings: ProjectSettings) -> TaskView:
    item_id = row["item_id"]
    text = image = None
    if row["kind"] == "text":
        text = cipher.decrypt("items", item_id, "content", bytes(row["content"])).decode()
    else:
        image = cipher.decrypt_json("items", item_id, "content", bytes(row["content"]))["blob"]
    annotation = None
    if row["result"] is not None:
        annotation = cipher.decrypt_json(
            "annotations", row["annotation_id"], "result", bytes(row["result"])
        )
    comment = None
    if row["comment"] is not None:
        comment = cipher.decrypt(
            "reviews", row["review_id"], "comment", bytes(row["comment"])
        ).decode()
    return TaskView(
        row["task_id"],
        item_id,
        row["kind"],
        text,
        image,
        row["width"],
        row["height"],
        settings.label_schema,
        row["lease_expires_at"],
        annotation,
        row["annotation_state"],
        comment,
    )


async def next_task(db: RuntimeDatabase, keys: KeyService, scope: ProjectScope) -> TaskView | None:
    """The annotator's next task: their current lease, else their queue, else an open slot."""
    cipher = await project_cipher(keys, scope.project_id)
    # BEGIN, the context, the settings, the claim and the read of the lease it made: one
    # round trip
    async with db.project_tx_first(
        scope.project_id, scope.context(), [READ_SETTINGS, _CLAIM, (_VIEW_OF_CURRENT_LEASE, [])]
    ) as (conn, (settings_rows, claimed, lease)):
        settings = settings_from_rows(settings_rows)
        if not claimed:
            return None
        if not lease or lease[0]["task_id"] != claimed[0]["task_id"]:  # never serve a guess
            raise ConflictError("the task changed while it was being served; ask again")
        view = _view_of(lease[0], cipher, settings)
        served = build_event(
            scope.actor,
            "task.serve",
            resource_type="task",
            resource_id=view.task_id,
            project_id=scope.project_id,
            details={"item": str(view.item_id)},
        )
        await commit_with(conn, [project_append(served)])
    return view


async def get_task(
    db: RuntimeDatabase, keys: KeyService, scope: ProjectScope, task_id: str | uuid.UUID
) -> TaskView:
    """Reopen one of the annotator's own tasks: the one they hold, or one whose answer they may
    still revise (403 for the others: decided, or assigned but not yet served)."""
    tid = parse_id(task_id, what="task")
    cipher = await project_cipher(keys, scope.project_id)
    async with db.project_tx(scope.project_id, scope.context()) as conn:
        settings = await read_settings(conn)
        view = await _task_view(conn, cipher, settings, tid)
        await audit_project(
            conn,
            scope.actor,
            "task.read",
            resource_type="task",
            resource_id=tid,
            project_id=scope.project_id,
            details={"item": str(view.item_id)},
        )
    return view


def _needs_review(annotation_id: uuid.UUID, share: float) -> bool:
    if share >= 1:
        return True
    if share <= 0:
        return False
    digest = hashlib.sha256(annotation_id.bytes).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < share


async def submit(
    db: RuntimeDatabase,
    keys: KeyService,
    scope: ProjectScope,
    task_id: str | uuid.UUID,
    result: object,
    reviewers: ReviewerSource,
) -> dict[str, Any]:
    """Submit (or revise) the annotation of one of the caller's own tasks.

    ``reviewers`` are the project's reviewers (from the live memberships); the least loaded one
    other than the annotator gets it when the project's review share selects it.
    """
    tid = parse_id(task_id, what="task")
    cipher = await project_cipher(keys, scope.project_id)
    # BEGIN, the context, the settings and the task (locked): one round trip
    async with db.project_tx_first(
        scope.project_id, scope.context(), [READ_SETTINGS, (_TASK_FOR_SUBMIT, [tid])]
    ) as (conn, (settings_rows, tasks_found)):
        settings = settings_from_rows(settings_rows)
        schema = settings.schema()
        if not tasks_found:
            raise NotFoundError("task not found")
        row = tasks_found[0]
        text = None
        if row["kind"] == "text":
            text = cipher.decrypt(
                "items", row["item_id"], "content", bytes(row["content"])
            ).decode()
        size = (row["width"], row["height"]) if row["width"] else None
        normalised = validate_result(schema, result, text=text, image_size=size)
        if row["annotation_id"] is None:
            if row["state"] != "leased":
                raise ConflictError("this task is not leased to you any more; fetch the next one")
            # a first answer: everything it writes, its event and COMMIT in one round trip
            annotation_id = uuid.uuid4()
            reviewer = await _choose_reviewer(scope, annotation_id, settings, reviewers)
            writes: list[Statement] = [
                (
                    "INSERT INTO annotations (id, task_id, item_id, annotator, result, state) "
                    "VALUES (%s, %s, %s, %s, %s, 'submitted')",
                    [
                        annotation_id,
                        tid,
                        row["item_id"],
                        scope.user_id,
                        cipher.encrypt_json("annotations", annotation_id, "result", normalised),
                    ],
                ),
                (_TASK_SUBMITTED, [tid]),
            ]
            if reviewer is not None:
                writes += _review_writes(scope, annotation_id, uuid.uuid4(), reviewer)
            submitted = build_event(
                scope.actor,
                "annotation.submit",
                resource_type="annotation",
                resource_id=annotation_id,
                project_id=scope.project_id,
                details={"task": str(tid), "version": 1, "review": reviewer is not None},
            )
            await commit_with(conn, [*writes, project_append(submitted)])
            return {
                "annotation_id": annotation_id,
                "version": 1,
                "state": "in_review" if reviewer is not None else "submitted",
            }
        # a revision (until the annotation is decided, or after a rejection)
        annotation_id = row["annotation_id"]
        if row["annotation_state"] not in REVISABLE:
            raise ConflictError("this annotation has been reviewed and can no longer change")
        version = row["version"] + 1
        cur2 = await conn.execute(
            "UPDATE annotations SET result = %s, version = %s, state = 'submitted', "
            "updated_at = now() WHERE id = %s",
            [
                cipher.encrypt_json("annotations", annotation_id, "result", normalised),
                version,
                annotation_id,
            ],
        )
        if cur2.rowcount != 1:
            raise ConflictError("this annotation can no longer change")
        await conn.execute(_TASK_SUBMITTED, [tid])
        review_id = await _route_revision(conn, scope, annotation_id, settings, reviewers)
        await audit_project(
            conn,
            scope.actor,
            "annotation.update",
            resource_type="annotation",
            resource_id=annotation_id,
            project_id=scope.project_id,
            details={"task": str(tid), "version": version, "review": review_id is not None},
        )
    return {
        "annotation_id": annotation_id,
        "version": version,
        "state": "in_review" if review_id else "submitted",
    }


async def _route_revision(
    conn: AsyncConnection[Any],
    scope: ProjectScope,
    annotation_id: uuid.UUID,
    settings: ProjectSettings,
    reviewers: ReviewerSource,
) -> uuid.UUID | None:
    cur = await conn.execute(
        "SELECT id, reviewer FROM reviews WHERE annotation_id = %s", [annotation_id]
    )
    existing = await cur.fetchone()
    if existing is not None:  # a revision after a rejection goes back to the same reviewer
        await conn.execute(
            "UPDATE reviews SET state = 'pending', decided_at = NULL WHERE id = %s",
            [existing[0]],
        )
        await conn.execute(
            "UPDATE annotations SET state = 'in_review' WHERE id = %s", [annotation_id]
        )
        review: uuid.UUID = existing[0]
        return review
    reviewer = await _choose_reviewer(scope, annotation_id, settings, reviewers)
    if reviewer is None:
        return None
    review_id = uuid.uuid4()
    for statement, params in _review_writes(scope, annotation_id, review_id, reviewer):
        await conn.execute(statement, params)
    return review_id


async def _choose_reviewer(
    scope: ProjectScope,
    annotation_id: uuid.UUID,
    settings: ProjectSettings,
    reviewers: ReviewerSource,
) -> uuid.UUID | None:
    """The reviewer of a new annotation, if the project's review share selects it and there
    is a reviewer other than its annotator."""
    if not _needs_review(annotation_id, settings.review_share):
        return None
    listed = reviewers if isinstance(reviewers, list) else await reviewers()
    candidates = [r for r in listed if r != scope.user_id]
    if not candidates:
        return None
    # spread the work: pick deterministically among reviewers by the annotation id
    return candidates[int.from_bytes(annotation_id.bytes[:4], "big") % len(candidates)]


def _review_writes(
    scope: ProjectScope, annotation_id: uuid.UUID, review_id: uuid.UUID, reviewer: uuid.UUID
) -> list[Statement]:
    return [
        (
            "INSERT INTO reviews (id, annotation_id, annotator, reviewer, state) "
            "VALUES (%s, %s, %s, %s, 'pending')",
            [review_id, annotation_id, scope.user_id, reviewer],
        ),
        ("UPDATE annotations SET state = 'in_review' WHERE id = %s", [annotation_id]),
    ]


async def skip(db: RuntimeDatabase, scope: ProjectScope, task_id: str | uuid.UUID) -> None:
    """Give the task back; the item is remembered as skipped by this annotator.

    The slot goes back for someone else: to the pool if it came from there, else to the
    manager's assignments (an assigned task stays out of automatic distribution). The
    annotator's own context can only see the task; giving it back (it stops being theirs) is
    done as the platform, in one transaction with the skip and its event.
    """
    tid = parse_id(task_id, what="task")
    async with db.project_tx(scope.project_id, scope.context()) as conn:
        cur = await conn.execute(
            "SELECT t.state, EXISTS (SELECT 1 FROM annotations a WHERE a.task_id = t.id) "
            "FROM tasks t WHERE t.id = %s",
            [tid],
        )
        row = await cur.fetchone()
    if row is None:
        raise NotFoundError("task not found")
    state, answered = row
    if answered:  # handed back after a rejection: revise it, it cannot go to someone else
        raise ConflictError("this task holds your annotation; revise it instead")
    if state not in ("leased", "assigned"):
        raise ConflictError("only a task you are working on can be skipped")
    async with db.project_tx(scope.project_id, scope.context("system")) as conn:
        cur = await conn.execute(
            "UPDATE tasks t SET state = 'open', assignee = NULL, lease_expires_at = NULL, "
            "updated_at = now() WHERE t.id = %s AND t.assignee = %s "
            "AND t.state IN ('leased', 'assigned') "
            "AND NOT EXISTS (SELECT 1 FROM annotations a WHERE a.task_id = t.id) "
            "RETURNING t.item_id",
            [tid, scope.user_id],
        )
        given_back = await cur.fetchone()
        if given_back is None:  # changed meanwhile (submitted, expired and taken, skipped)
            raise ConflictError("only a task you are working on can be skipped")
        await conn.execute(
            "INSERT INTO task_skips (item_id, user_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            [given_back[0], scope.user_id],
        )
        await audit_project(
            conn,
            scope.actor,
            "task.skip",
            resource_type="task",
            resource_id=tid,
            project_id=scope.project_id,
        )


async def history(
    db: RuntimeDatabase, keys: KeyService, scope: ProjectScope, *, limit: int = 10
) -> list[dict[str, Any]]:
    """The annotator's own last submissions (their answers, no content), newest first."""
    if not 1 <= limit <= 50:
        raise InvalidInputError("limit must be 1..50", field="limit")
    cipher = await project_cipher(keys, scope.project_id)
    async with db.project_tx(scope.project_id, scope.context()) as conn:
        cur = await conn.cursor(row_factory=dict_row).execute(
            "SELECT a.id, a.task_id, a.state, a.version, a.result, a.updated_at "
            "FROM annotations a WHERE a.annotator = %s ORDER BY a.updated_at DESC LIMIT %s",
            [scope.user_id, limit],
        )
        rows = await cur.fetchall()
        await audit_project(
            conn,
            scope.actor,
            "annotation.history",
            resource_type="annotation",
            project_id=scope.project_id,
            details={"count": len(rows)},
        )
    return [
        {
            "annotation_id": r["id"],
            "task_id": r["task_id"],
            "state": r["state"],
            "version": r["version"],
            "updated_at": r["updated_at"],
            "editable": r["state"] in REVISABLE,
            "result": cipher.decrypt_json("annotations", r["id"], "result", bytes(r["result"])),
        }
        for r in rows
    ]


async def assign(
    db: RuntimeDatabase,
    scope: ProjectScope,
    *,
    annotator: uuid.UUID,
    count: int,
    import_id: uuid.UUID | None = None,
    gold_only: bool = False,
) -> int:
    """A manager assigns up to ``count`` open tasks (optionally of one import) to an annotator."""
    if not 1 <= count <= 100_000:
        raise InvalidInputError("count must be 1..100000", field="count")
    # filtering by import reads item rows, which a manager's context cannot: the platform
    # runs the assignment the manager asked for, and records who asked
    async with db.project_tx(scope.project_id, scope.context("system")) as conn:
        cur = await conn.execute(
            """
            UPDATE tasks t SET assignee = %s, state = 'assigned', origin = 'assigned',
                   updated_at = now()
             WHERE t.id IN (
               SELECT c.id FROM tasks c JOIN items i ON i.id = c.item_id
                WHERE c.state = 'open'
                  AND (%s::uuid IS NULL OR i.import_id = %s::uuid)
                  AND (NOT %s OR i.is_gold)
                  AND NOT EXISTS (SELECT 1 FROM tasks o WHERE o.item_id = c.item_id
                                   AND o.assignee = %s)
                  -- never an item they skipped: it would never be served to them
                  AND NOT EXISTS (SELECT 1 FROM task_skips k WHERE k.item_id = c.item_id
                                   AND k.user_id = %s)
                ORDER BY c.created_at, c.slot LIMIT %s FOR UPDATE SKIP LOCKED)
            """,
            [annotator, import_id, import_id, gold_only, annotator, annotator, count],
        )
        assigned = cur.rowcount
        await audit_project(
            conn,
            scope.actor,
            "task.assign",
            resource_type="user",
            resource_id=annotator,
            project_id=scope.project_id,
            details={"count": assigned},
        )
    return assigned
