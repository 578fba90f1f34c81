"""The API calls, written once (sans-I/O) and driven by ``Client`` and ``AsyncClient``.

Each operation is a generator: it yields a ``Call`` (what to send), receives the
``httpx.Response`` (error statuses have already been raised as exceptions) and returns the typed
result. The sync and async clients only differ in how they send.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeAlias, TypeVar

import httpx

from labelvault.client.models import (
    Aggregates,
    AuditPage,
    Decision,
    Download,
    DownloadLink,
    Export,
    ImportReport,
    MyAnnotation,
    Project,
    ProjectSettings,
    Review,
    ReviewSummary,
    SubmitResult,
    Task,
)

T = TypeVar("T")
Op: TypeAlias = Generator["Call", httpx.Response, T]
Id: TypeAlias = uuid.UUID | str
OnError = Literal["reject", "skip"]
DecisionKind = Literal["accept", "reject", "correct"]
CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Upload:
    """A file streamed as the request body (never read into memory at once)."""

    path: Path
    size: int
    progress: Callable[[int], None] | None = None


@dataclass(frozen=True)
class Call:
    method: str
    path: str  # relative to the base URL, or absolute for download links
    params: Mapping[str, str | int] | None = None
    json: Any = None
    upload: Upload | None = None
    download_to: Path | None = None
    headers: dict[str, str] = field(default_factory=dict)


def _p(project_id: Id) -> str:
    return f"/api/v1/projects/{uuid.UUID(str(project_id))}"


def _seg(value: Id) -> str:
    """A path segment from an id (quoted: ids come from callers)."""
    from urllib.parse import quote

    return quote(str(value), safe="")


def get_project(project_id: Id) -> Op[Project]:
    r = yield Call("GET", _p(project_id))
    return Project.from_json(r.json())


def get_settings(project_id: Id) -> Op[ProjectSettings]:
    r = yield Call("GET", f"{_p(project_id)}/settings")
    return ProjectSettings.from_json(r.json())


def update_settings(project_id: Id, changes: Mapping[str, Any]) -> Op[ProjectSettings]:
    r = yield Call("PUT", f"{_p(project_id)}/settings", json=dict(changes))
    return ProjectSettings.from_json(r.json())


def import_file(
    project_id: Id,
    path: str | os.PathLike[str],
    fmt: str | None,
    on_error: OnError,
    name: str | None,
    progress: Callable[[int], None] | None,
) -> Op[ImportReport]:
    p = Path(path)
    size = p.stat().st_size
    params: dict[str, str | int] = {"on_error": on_error, "name": name or p.name[:200]}
    if fmt:
        params["format"] = fmt
    r = yield Call(
        "POST",
        f"{_p(project_id)}/imports",
        params=params,
        upload=Upload(p, size, progress),
        headers={"content-type": "application/octet-stream"},
    )
    return ImportReport.from_json(r.json())


def next_task(project_id: Id) -> Op[Task | None]:
    r = yield Call("POST", f"{_p(project_id)}/tasks/next")
    return None if r.status_code == 204 else Task.from_json(r.json())


def get_task(project_id: Id, task_id: Id) -> Op[Task]:
    r = yield Call("GET", f"{_p(project_id)}/tasks/{_seg(task_id)}")
    return Task.from_json(r.json())


def submit(project_id: Id, task_id: Id, result: Mapping[str, Any]) -> Op[SubmitResult]:
    r = yield Call(
        "POST", f"{_p(project_id)}/tasks/{_seg(task_id)}/annotation", json={"result": dict(result)}
    )
    return SubmitResult.from_json(r.json())


def skip(project_id: Id, task_id: Id) -> Op[None]:
    yield Call("POST", f"{_p(project_id)}/tasks/{_seg(task_id)}/skip")
    return None


def my_annotations(project_id: Id, limit: int) -> Op[list[MyAnnotation]]:
    r = yield Call("GET", f"{_p(project_id)}/my/annotations", params={"limit": limit})
    return [MyAnnotation.from_json(a) for a in r.json()]


def assign(
    project_id: Id, annotator_id: Id, count: int, import_id: Id | None, gold_only: bool
) -> Op[int]:
    body: dict[str, Any] = {
        "annotator_id": str(annotator_id),
        "count": count,
        "gold_only": gold_only,
    }
    if import_id is not None:
        body["import_id"] = str(import_id)
    r = yield Call("POST", f"{_p(project_id)}/assignments", json=body)
    return int(r.json()["assigned"])


def review_queue(project_id: Id, limit: int) -> Op[list[ReviewSummary]]:
    r = yield Call("GET", f"{_p(project_id)}/reviews", params={"limit": limit})
    return [ReviewSummary.from_json(x) for x in r.json()]


def next_review(project_id: Id) -> Op[Review | None]:
    r = yield Call("POST", f"{_p(project_id)}/reviews/next")
    return None if r.status_code == 204 else Review.from_json(r.json())


def get_review(project_id: Id, review_id: Id) -> Op[Review]:
    r = yield Call("GET", f"{_p(project_id)}/reviews/{_seg(review_id)}")
    return Review.from_json(r.json())


def decide(
    project_id: Id,
    review_id: Id,
    decision: DecisionKind,
    comment: str | None,
    result: Mapping[str, Any] | None,
) -> Op[Decision]:
    body: dict[str, Any] = {"decision": decision}
    if comment is not None:
        body["comment"] = comment
    if result is not None:
        body["result"] = dict(result)
    r = yield Call("POST", f"{_p(project_id)}/reviews/{_seg(review_id)}/decision", json=body)
    return Decision.from_json(r.json())


def aggregates(project_id: Id, days: int) -> Op[Aggregates]:
    r = yield Call("GET", f"{_p(project_id)}/aggregates", params={"days": days})
    return Aggregates.from_json(r.json())


def audit(project_id: Id, filters: Mapping[str, str | int | None]) -> Op[AuditPage]:
    params = {k: v for k, v in filters.items() if v is not None}
    r = yield Call("GET", f"{_p(project_id)}/audit", params=params)
    return AuditPage.from_json(r.json())


def request_export(
    project_id: Id, fmt: str, only_accepted: bool, options: Mapping[str, Any]
) -> Op[Export]:
    body = {"format": fmt, "only_accepted": only_accepted, **options}
    r = yield Call("POST", f"{_p(project_id)}/exports", json=body)
    return Export.from_json(r.json())


def export_status(project_id: Id, export_id: Id) -> Op[Export]:
    r = yield Call("GET", f"{_p(project_id)}/exports/{_seg(export_id)}")
    return Export.from_json(r.json())


def approve_export(project_id: Id, export_id: Id) -> Op[Export]:
    r = yield Call("POST", f"{_p(project_id)}/exports/{_seg(export_id)}/approve")
    return Export.from_json(r.json())


def reject_export(project_id: Id, export_id: Id) -> Op[Export]:
    r = yield Call("POST", f"{_p(project_id)}/exports/{_seg(export_id)}/reject")
    return Export.from_json(r.json())


def list_exports(project_id: Id, limit: int) -> Op[list[Export]]:
    r = yield Call("GET", f"{_p(project_id)}/exports", params={"limit": limit})
    return [Export.from_json(e) for e in r.json()]


def create_download_link(project_id: Id, export_id: Id) -> Op[DownloadLink]:
    r = yield Call("POST", f"{_p(project_id)}/exports/{_seg(export_id)}/link")
    return DownloadLink.from_json(uuid.UUID(str(export_id)), r.json())


def download_export(
    project_id: Id, export_id: Id, to_path: str | os.PathLike[str], link: DownloadLink | None
) -> Op[Download]:
    if link is None:
        link = yield from create_download_link(project_id, export_id)
    target = Path(to_path)
    if link.url:
        call = Call("GET", link.url, download_to=target)
    elif link.token:
        call = Call(
            "GET",
            f"{_p(project_id)}/exports/{_seg(export_id)}/download",
            params={"token": link.token},
            download_to=target,
        )
    else:
        call = Call(
            "GET", f"{_p(project_id)}/exports/{_seg(export_id)}/download", download_to=target
        )
    r = yield call
    return Download(str(target), target.stat().st_size, r.headers.get("content-type"))
