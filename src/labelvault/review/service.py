"""The reviewer's queue and decisions, in the reviewer's own database context.

A reviewer sees only the annotations routed to them (row-level security), decides once, and
the decision is audited in the same transaction. A rejection sends the task back to its
annotator, with the comment, encrypted.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from psycopg.rows import dict_row

from labelvault.access.scope import ProjectScope
from labelvault.annotation.label_schema import validate_result
from labelvault.annotation.settings import read_settings
from labelvault.audit.record import audit_project
from labelvault.db.runtime import RuntimeDatabase
from labelvault.kernel.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
)
from labelvault.kernel.ids import parse_id
from labelvault.keys.service import KeyService
from labelvault.keys.values import project_cipher

Decision = Literal["accept", "reject", "correct"]
MAX_COMMENT = 4000


async def queue(
    db: RuntimeDatabase, scope: ProjectScope, *, limit: int = 50
) -> list[dict[str, Any]]:
    """The reviewer's pending reviews (ids and times only)."""
    if not 1 <= limit <= 200:
        raise InvalidInputError("limit must be 1..200", field="limit")
    async with db.project_tx(scope.project_id, scope.context()) as conn:
        cur = await conn.cursor(row_factory=dict_row).execute(
            "SELECT id AS review_id, annotation_id, created_at FROM reviews "
            "WHERE state = 'pending' AND reviewer = %s ORDER BY created_at LIMIT %s",
            [scope.user_id, limit],
        )
        rows = await cur.fetchall()
        await audit_project(
            conn,
            scope.actor,
            "review.queue",
            resource_type="review",
            project_id=scope.project_id,
            details={"count": len(rows)},
        )
    return list(rows)


async def get_review(
    db: RuntimeDatabase,
    keys: KeyService,
    scope: ProjectScope,
    review_id: str | uuid.UUID | None = None,
) -> dict[str, Any] | None:
    """One review of the reviewer's queue with its content and the annotation (the oldest
    pending one if no id); a decided review answers 403."""
    cipher = await project_cipher(keys, scope.project_id)
    async with db.project_tx(scope.project_id, scope.context()) as conn:
        settings = await read_settings(conn)
        dcur = conn.cursor(row_factory=dict_row)
        base = (
            "SELECT v.id AS review_id, v.state, v.created_at, a.id AS annotation_id, "
            "a.result, a.version, a.task_id, i.id AS item_id, i.kind, i.content, i.width, "
            "i.height FROM reviews v JOIN annotations a ON a.id = v.annotation_id "
            "JOIN items i ON i.id = a.item_id "
        )
        if review_id is None:
            await dcur.execute(
                base + "WHERE v.state = 'pending' AND v.reviewer = %s "
                "ORDER BY v.created_at LIMIT 1",
                [scope.user_id],
            )
        else:
            await dcur.execute(base + "WHERE v.id = %s", [parse_id(review_id, what="review")])
        row = await dcur.fetchone()
        if row is None:
            if review_id is None:
                return None
            raise NotFoundError("review not found")
        if row["state"] != "pending":  # out of the queue: its content is not shown again
            raise PermissionDeniedError(
                f"this review is {row['state']}: only reviews waiting in your queue are shown"
            )
        await audit_project(
            conn,
            scope.actor,
            "review.read",
            resource_type="review",
            resource_id=row["review_id"],
            project_id=scope.project_id,
            details={"item": str(row["item_id"])},
        )
    content: dict[str, Any]
    if row["kind"] == "text":
        content = {
            "text": cipher.decrypt(
                "items", row["item_id"], "content", bytes(row["content"])
            ).decode()
        }
    else:
        content = {
            "image_blob": cipher.decrypt_json(
                "items", row["item_id"], "content", bytes(row["content"])
            )["blob"],
            "width": row["width"],
            "height": row["height"],
        }
    return {
        "review_id": row["review_id"],
        "state": row["state"],
        "created_at": row["created_at"],
        "annotation_id": row["annotation_id"],
        "version": row["version"],
        "item_id": row["item_id"],
        "kind": row["kind"],
        "content": content,
        "label_schema": settings.label_schema,
        "result": cipher.decrypt_json(
            "annotations", row["annotation_id"], "result", bytes(row["result"])
        ),
    }


async def decide(
    db: RuntimeDatabase,
    keys: KeyService,
    scope: ProjectScope,
    review_id: str | uuid.UUID,
    decision: Decision,
    *,
    comment: str | None = None,
    corrected: object = None,
) -> dict[str, Any]:
    rid = parse_id(review_id, what="review")
    if decision not in ("accept", "reject", "correct"):
        raise InvalidInputError("decision must be accept, reject or correct", field="decision")
    if comment is not None and (not isinstance(comment, str) or len(comment) > MAX_COMMENT):
        raise InvalidInputError(
            f"comment must be text of at most {MAX_COMMENT} characters", field="comment"
        )
    if decision == "reject" and not (comment and comment.strip()):
        raise InvalidInputError("a rejection needs a comment for the annotator", field="comment")
    cipher = await project_cipher(keys, scope.project_id)
    async with db.project_tx(scope.project_id, scope.context()) as conn:
        cur0 = await conn.execute("SELECT state FROM reviews WHERE id = %s", [rid])
        seen = await cur0.fetchone()
        if seen is None:
            raise NotFoundError("review not found")
        if seen[0] != "pending":
            raise ConflictError("this review has already been decided")
        # the task first, as the annotator's submit locks it first: a revision and a decision
        # of one annotation wait for each other there, instead of each holding a row the other
        # needs (a deadlock)
        await conn.execute(
            "SELECT t.id FROM tasks t JOIN annotations a ON a.task_id = t.id "
            "JOIN reviews v ON v.annotation_id = a.id WHERE v.id = %s FOR UPDATE OF t",
            [rid],
        )
        cur = await conn.cursor(row_factory=dict_row).execute(
            "SELECT v.id, v.state, a.id AS annotation_id, a.task_id, i.id AS item_id, i.kind, "
            "i.content, i.width, i.height FROM reviews v "
            "JOIN annotations a ON a.id = v.annotation_id JOIN items i ON i.id = a.item_id "
            "WHERE v.id = %s FOR UPDATE OF v",
            [rid],
        )
        row = await cur.fetchone()
        if row is None or row["state"] != "pending":  # decided meanwhile
            raise ConflictError("this review has already been decided")
        corrected_ct = None
        if decision == "correct":
            settings = await read_settings(conn)
            text = None
            if row["kind"] == "text":
                text = cipher.decrypt(
                    "items", row["item_id"], "content", bytes(row["content"])
                ).decode()
            size = (row["width"], row["height"]) if row["width"] else None
            normalised = validate_result(settings.schema(), corrected, text=text, image_size=size)
            corrected_ct = cipher.encrypt_json("reviews", rid, "corrected_result", normalised)
        comment_ct = (
            cipher.encrypt("reviews", rid, "comment", comment.encode()) if comment else None
        )
        state = {"accept": "accepted", "reject": "rejected", "correct": "corrected"}[decision]
        # the annotation first: the reviewer may change it only while the review is pending
        cur2 = await conn.execute(
            "UPDATE annotations SET state = %s, updated_at = now() WHERE id = %s",
            [state, row["annotation_id"]],
        )
        if cur2.rowcount != 1:
            raise ConflictError("this annotation is not in your review queue")
        await conn.execute(
            "UPDATE reviews SET state = %s, comment = %s, corrected_result = %s, "
            "decided_at = now() WHERE id = %s",
            [state, comment_ct, corrected_ct, rid],
        )
        # a rejection hands the task back to its annotator
        task_state = (
            "assigned"
            if decision == "reject"
            else ("accepted" if decision in ("accept", "correct") else "submitted")
        )
        # handed back, the task is that annotator's own (never an open slot someone else
        # could claim: only its annotator can see, and revise, the annotation it holds)
        await conn.execute(
            "UPDATE tasks SET state = %s, updated_at = now(), "
            "origin = CASE WHEN %s THEN 'assigned' ELSE origin END WHERE id = %s",
            [task_state, decision == "reject", row["task_id"]],
        )
        await audit_project(
            conn,
            scope.actor,
            f"review.{decision}",
            resource_type="review",
            resource_id=rid,
            project_id=scope.project_id,
            details={"annotation": str(row["annotation_id"])},
        )
    return {"review_id": rid, "state": state}
