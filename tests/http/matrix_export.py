"""Matrix rows of the export routes. Annotators and reviewers have no export route (403);
an unknown ``{export_id}`` is random, so a permitted caller gets 404 for it."""

from __future__ import annotations

from typing import Any

P = "/api/v1/projects/{project_id}/exports"

ROWS: list[dict[str, Any]] = [
    {
        "method": "POST",
        "path": P,
        "permission": "export.request",
        "scope": "project",
        "json": {"format": "jsonl", "only_accepted": True},
        "success": 201,
    },
    {
        "method": "GET",
        "path": P,
        "permission": "export.request",
        "scope": "project",
        "success": 200,
    },
    {
        "method": "GET",
        "path": f"{P}/{{export_id}}",
        "permission": "export.request",
        "scope": "project",
        "success": 404,
    },
    {
        "method": "POST",
        "path": f"{P}/{{export_id}}/approve",
        "permission": "export.approve",
        "scope": "project",
        "success": 404,
    },
    {
        "method": "POST",
        "path": f"{P}/{{export_id}}/reject",
        "permission": "export.approve",
        "scope": "project",
        "success": 404,
    },
    {
        "method": "POST",
        "path": f"{P}/{{export_id}}/link",
        "permission": "export.request",
        "scope": "project",
        "success": 404,
    },
    {
        "method": "GET",
        "path": f"{P}/{{export_id}}/download",
        "permission": "export.request",
        "scope": "project",
        "params": {"token": "not-a-real-token"},
        "success": 404,
    },
]
