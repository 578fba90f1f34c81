"""Every route that touches project data writes its audit event, driven from the route table.

Each project route is either mapped to the audit action it must produce or listed as touching no
project data (with the reason); a new route in neither list fails the first test.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from tests.integration.pipeline.conftest import Team

from labelvault.api.app import api_routes, create_app
from labelvault.api.security import ACCESS_ATTR
from labelvault.audit.sealer import seal_project
from labelvault.db.context import ProjectContext
from labelvault.platform import Platform

P = "/api/v1/projects/{project_id}"
AUDITED: dict[tuple[str, str], str] = {
    ("PUT", f"{P}/settings"): "project.settings.update",
    ("POST", f"{P}/imports"): "item.import",
    ("POST", f"{P}/tasks/next"): "task.serve",
    ("GET", f"{P}/tasks/{{task_id}}"): "task.read",
    ("POST", f"{P}/tasks/{{task_id}}/annotation"): "annotation.submit",
    ("POST", f"{P}/tasks/{{task_id}}/skip"): "task.skip",
    ("GET", f"{P}/my/annotations"): "annotation.history",
    ("POST", f"{P}/assignments"): "task.assign",
    ("GET", f"{P}/aggregates"): "aggregates.read",
    ("GET", f"{P}/reviews"): "review.queue",
    ("POST", f"{P}/reviews/next"): "review.read",
    ("GET", f"{P}/reviews/{{review_id}}"): "review.read",
    ("POST", f"{P}/reviews/{{review_id}}/decision"): "review.accept",
    ("GET", f"{P}/audit"): "audit.read",
    ("GET", f"{P}/audit/export"): "audit.export",
    ("POST", f"{P}/exports"): "export.request",
    ("POST", f"{P}/exports/{{export_id}}/approve"): "export.approve",
    ("POST", f"{P}/exports/{{export_id}}/reject"): "export.reject",
    ("POST", f"{P}/exports/{{export_id}}/link"): "export.link",
    ("GET", f"{P}/exports/{{export_id}}/download"): "export.download",
    ("GET", f"{P}/tasks/{{task_id}}/image"): "item.image.render",
    ("GET", f"{P}/reviews/{{review_id}}/image"): "item.image.render",
    # the dashboard renders the aggregates server-side, through the audited service
    ("GET", "/projects/{project_id}/dashboard"): "aggregates.read",
}
NO_PROJECT_DATA = {
    ("GET", P): "project metadata from the control plane (name, region)",
    ("GET", f"{P}/settings"): "configuration (label schema), no item or annotation",
    ("GET", f"{P}/members"): "memberships live in the control plane, audited there on change",
    ("PUT", f"{P}/members/{{user_id}}"): "control-plane change, audited as member.set",
    ("DELETE", f"{P}/members/{{user_id}}"): "control-plane change, audited as member.remove",
    ("GET", f"{P}/exports"): "export states, counts and hashes; no content",
    ("GET", f"{P}/exports/{{export_id}}"): "one export's state, counts and hashes; no content",
    # web pages: shells whose data arrives through the audited API calls above
    ("GET", "/projects/{project_id}/annotate"): "page shell; tasks come from POST tasks/next",
    ("GET", "/projects/{project_id}/review"): "page shell; reviews come from the review API",
    ("GET", "/projects/{project_id}/data"): "page shell; imports and exports via the API",
    ("GET", "/projects/{project_id}/audit"): "page shell; the trail comes from GET …/audit",
    ("GET", "/projects/{project_id}/members"): "control-plane memberships, no project data",
}
# routes exercised by their own suites (exports: tests/integration/export; images:
# tests/browser and tests/integration/web), which assert these events there
EXERCISED_ELSEWHERE = {
    k
    for k in AUDITED
    if "/exports" in k[1] or k[1].endswith("/image") or not k[1].startswith("/api/")
}


def project_routes(platform: Platform) -> set[tuple[str, str]]:
    app = create_app(platform, manage_lifecycle=False)
    found = set()
    for route in api_routes(app.router.routes):
        if getattr(route.endpoint, ACCESS_ATTR).scope.value == "project":
            found |= {(m, route.path) for m in route.methods or ()}
    return found


def test_every_project_route_is_audited_or_exempt(platform: Platform) -> None:
    unknown = sorted(project_routes(platform) - set(AUDITED) - set(NO_PROJECT_DATA))
    assert unknown == [], f"project routes without an audit expectation: {unknown}"


async def trail_actions(platform: Platform, project_id: uuid.UUID) -> list[str]:
    await seal_project(platform.db, project_id)
    async with platform.db.project_tx(project_id, ProjectContext(None, "system")) as conn:
        cur = await conn.execute("SELECT body FROM audit_events ORDER BY seq")
        return [json.loads(bytes(r[0]))["action"] for r in await cur.fetchall()]


async def test_each_route_writes_its_event(team: Team, platform: Platform) -> None:
    c = team.clients
    calls: list[tuple[tuple[str, str], Any]] = []

    async def call(key: tuple[str, str], client: Any, path: str, **kw: Any) -> Any:
        r = await client.request(key[0], team.url(path), **kw)
        assert r.status_code < 400, (key, r.status_code, r.text)
        calls.append((key, r))
        return r

    await call(("PUT", f"{P}/settings"), c["manager"], "/settings", json={"review_share": 1.0})
    imp = await call(
        ("POST", f"{P}/imports"),
        c["data_owner"],
        "/imports",
        content=b"alpha\nbeta\ngamma\n",
        params={"format": "text"},
    )
    assert imp.json()["items_added"] == 3
    await call(
        ("POST", f"{P}/assignments"),
        c["manager"],
        "/assignments",
        json={"annotator_id": str(team.users["annotator2"].id), "count": 1},
    )
    task = (await call(("POST", f"{P}/tasks/next"), c["annotator"], "/tasks/next")).json()
    await call(("GET", f"{P}/tasks/{{task_id}}"), c["annotator"], f"/tasks/{task['task_id']}")
    await call(
        ("POST", f"{P}/tasks/{{task_id}}/annotation"),
        c["annotator"],
        f"/tasks/{task['task_id']}/annotation",
        json={"result": {"labels": ["spam"]}},
    )
    other = (await c["annotator"].post(team.url("/tasks/next"))).json()
    await call(
        ("POST", f"{P}/tasks/{{task_id}}/skip"), c["annotator"], f"/tasks/{other['task_id']}/skip"
    )
    await call(("GET", f"{P}/my/annotations"), c["annotator"], "/my/annotations")
    await call(("GET", f"{P}/reviews"), c["reviewer"], "/reviews")
    review = (await call(("POST", f"{P}/reviews/next"), c["reviewer"], "/reviews/next")).json()
    await call(
        ("GET", f"{P}/reviews/{{review_id}}"), c["reviewer"], f"/reviews/{review['review_id']}"
    )
    await call(
        ("POST", f"{P}/reviews/{{review_id}}/decision"),
        c["reviewer"],
        f"/reviews/{review['review_id']}/decision",
        json={"decision": "accept"},
    )
    await call(("GET", f"{P}/aggregates"), c["manager"], "/aggregates")
    await call(("GET", f"{P}/audit"), c["manager"], "/audit")
    await call(("GET", f"{P}/audit/export"), c["manager"], "/audit/export")

    actions = await trail_actions(platform, team.project_id)
    exercised = {key for key, _ in calls}
    for key in exercised:
        assert AUDITED[key] in actions, f"{key} left no {AUDITED[key]} event"
    # every audited route is exercised here or by its own suite
    assert set(AUDITED) <= exercised | EXERCISED_ELSEWHERE
