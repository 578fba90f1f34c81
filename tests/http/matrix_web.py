"""Matrix rows of the web pages and of the image renditions.

Pages keep their real permission (``@access``); the matrix's client asks for JSON, so a caller
who is not signed in gets the API's 401 like everywhere else (a browser asking for text/html
gets a 303 to /login instead: tests/integration/web). ``/`` is public and sends anonymous
visitors to the sign-in page. ``{name}`` of the static route is not on its allow-list (404).
Unknown ``{task_id}``/``{review_id}`` are random: a permitted caller gets 404 for them, exactly
like for another annotator's task.
"""

from __future__ import annotations

from typing import Any

P = "/projects/{project_id}"
API = "/api/v1/projects/{project_id}"
ORG = "/orgs/{org_id}"


def _page(path: str, permission: str, scope: str, success: Any = 200) -> dict[str, Any]:
    return {
        "method": "GET",
        "path": path,
        "permission": permission,
        "scope": scope,
        "success": success,
    }


ROWS: list[dict[str, Any]] = [
    _page("/", "public", "public", lambda caller: 303 if caller == "anonymous" else 200),
    _page("/login", "public", "public"),
    _page("/static/{name}", "public", "public", 404),
    _page("/account", "self.manage", "self"),
    _page(f"{P}/annotate", "task.work", "project"),
    _page(f"{P}/review", "review.work", "project"),
    _page(f"{P}/dashboard", "aggregates.read", "project"),
    _page(f"{P}/data", "item.import", "project"),
    _page(f"{P}/members", "member.manage", "project"),
    _page(f"{P}/audit", "audit.read", "project"),
    _page(f"{ORG}/admin", "user.manage", "org"),
    _page(f"{ORG}/access-review", "access.review", "org"),
    _page(f"{ORG}/audit", "audit.read", "org"),
    _page("/admin", "org.create", "system"),
    _page(f"{API}/tasks/{{task_id}}/image", "task.work", "project", 404),
    _page(f"{API}/reviews/{{review_id}}/image", "review.work", "project", 404),
]
