"""Matrix rows of the labelling pipeline (settings, imports, tasks, assignment, aggregates) and
of the review routes. Unknown ``{task_id}``/``{review_id}`` are random: a permitted caller gets
404 for them, exactly like for another annotator's task."""

from __future__ import annotations

import uuid
from typing import Any

P = "/api/v1/projects/{project_id}"
SCHEMA = {"kind": "text_classification", "labels": ["a", "b"]}

ROWS: list[dict[str, Any]] = [
    {
        "method": "GET",
        "path": f"{P}/settings",
        "permission": "project.read",
        "scope": "project",
        "success": 200,
    },
    {
        "method": "PUT",
        "path": f"{P}/settings",
        "permission": "project.configure",
        "scope": "project",
        "json": {"label_schema": SCHEMA, "review_share": 1.0},
        "success": 200,
    },
    # before any import: the queue is empty
    {
        "method": "POST",
        "path": f"{P}/tasks/next",
        "permission": "task.work",
        "scope": "project",
        "success": 204,
    },
    {
        "method": "GET",
        "path": f"{P}/tasks/{{task_id}}",
        "permission": "task.work",
        "scope": "project",
        "success": 404,
    },
    {
        "method": "POST",
        "path": f"{P}/tasks/{{task_id}}/annotation",
        "permission": "task.work",
        "scope": "project",
        "json": {"result": {"labels": ["a"]}},
        "success": 404,
    },
    {
        "method": "POST",
        "path": f"{P}/tasks/{{task_id}}/skip",
        "permission": "task.work",
        "scope": "project",
        "success": 404,
    },
    {
        "method": "GET",
        "path": f"{P}/my/annotations",
        "permission": "task.work",
        "scope": "project",
        "success": 200,
    },
    {
        "method": "POST",
        "path": f"{P}/imports",
        "permission": "item.import",
        "scope": "project",
        "content": lambda: f"row {uuid.uuid4()}\n".encode(),
        "params": {"format": "text"},
        "success": 201,
    },
    {
        "method": "POST",
        "path": f"{P}/assignments",
        "permission": "task.assign",
        "scope": "project",
        "json": lambda: {"annotator_id": str(uuid.uuid4()), "count": 1},
        "success": 404,
    },
    {
        "method": "GET",
        "path": f"{P}/aggregates",
        "permission": "aggregates.read",
        "scope": "project",
        "success": 200,
    },
    {
        "method": "GET",
        "path": f"{P}/reviews",
        "permission": "review.work",
        "scope": "project",
        "success": 200,
    },
    {
        "method": "POST",
        "path": f"{P}/reviews/next",
        "permission": "review.work",
        "scope": "project",
        "success": 204,
    },
    {
        "method": "GET",
        "path": f"{P}/reviews/{{review_id}}",
        "permission": "review.work",
        "scope": "project",
        "success": 404,
    },
    {
        "method": "POST",
        "path": f"{P}/reviews/{{review_id}}/decision",
        "permission": "review.work",
        "scope": "project",
        "json": {"decision": "accept"},
        "success": 404,
    },
]
