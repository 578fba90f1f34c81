"""Authorization-matrix rows of the audit routes (imported by the matrix test)."""

from __future__ import annotations

ROWS: list[dict[str, object]] = [
    {
        "method": "GET",
        "path": "/api/v1/projects/{project_id}/audit",
        "permission": "audit.read",
        "scope": "project",
        "json": None,
        "success": 200,
    },
    {
        "method": "GET",
        "path": "/api/v1/projects/{project_id}/audit/export",
        "permission": "audit.read",
        "scope": "project",
        "json": None,
        "success": 200,
    },
    {
        "method": "GET",
        "path": "/api/v1/orgs/{org_id}/audit",
        "permission": "audit.read",
        "scope": "org",
        "json": None,
        "success": 200,
    },
]
