"""The labelling pipeline: settings, imports, the annotator's tasks, assignment, aggregates."""

from __future__ import annotations

import io
import uuid
from typing import Annotated, Any, BinaryIO, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse, Response

from labelvault import identity
from labelvault.access import Permission, Scope
from labelvault.annotation import settings as project_settings
from labelvault.annotation import tasks
from labelvault.api.security import RequestContext, access, authorize, project_scope
from labelvault.api.uploads import PayloadTooLargeError, read_all, read_head, upload_slot
from labelvault.datasets.parsers import detect_format, sniff_format
from labelvault.datasets.service import ImportRowsError, import_items
from labelvault.quality.service import aggregates

router = APIRouter(prefix="/api/v1/projects/{project_id}", tags=["pipeline"])
Ctx = Annotated[RequestContext, Depends(authorize)]
MAX_UPLOAD_BYTES = 512 * 1024 * 1024


class SettingsIn(BaseModel):
    model_config = {"extra": "forbid"}
    label_schema: dict[str, Any] | None = None
    overlap: int | None = None
    auto_distribution: bool | None = None
    review_share: float | None = None
    export_requires_approval: bool | None = None
    lease_seconds: int | None = None


class AnnotationIn(BaseModel):
    model_config = {"extra": "forbid"}
    result: dict[str, Any]


class AssignmentIn(BaseModel):
    model_config = {"extra": "forbid"}
    annotator_id: uuid.UUID
    count: int = Field(ge=1, le=100_000)
    import_id: uuid.UUID | None = None
    gold_only: bool = False


def _settings_out(s: project_settings.ProjectSettings) -> dict[str, Any]:
    return {
        "label_schema": s.label_schema,
        "overlap": s.overlap,
        "auto_distribution": s.auto_distribution,
        "review_share": s.review_share,
        "export_requires_approval": s.export_requires_approval,
        "lease_seconds": s.lease_seconds,
    }


def _task_out(view: tasks.TaskView) -> dict[str, Any]:
    return {
        "task_id": str(view.task_id),
        "item_id": str(view.item_id),
        "kind": view.kind,
        "text": view.text,
        "image_url": (f"tasks/{view.task_id}/image" if view.image_blob else None),
        "width": view.width,
        "height": view.height,
        "label_schema": view.label_schema,
        "lease_expires_at": view.lease_expires_at.isoformat() if view.lease_expires_at else None,
        "annotation": view.annotation,
        "annotation_state": view.annotation_state,
        "review_comment": view.review_comment,
    }


@router.get("/settings")
@access(Permission.PROJECT_READ, Scope.PROJECT)
async def get_settings(project_id: uuid.UUID, ctx: Ctx) -> dict[str, Any]:
    return _settings_out(await project_settings.get_settings(ctx.platform.db, project_scope(ctx)))


@router.put("/settings")
@access(Permission.PROJECT_CONFIGURE, Scope.PROJECT)
async def put_settings(project_id: uuid.UUID, body: SettingsIn, ctx: Ctx) -> dict[str, Any]:
    changes = body.model_dump(exclude_unset=True)
    updated = await project_settings.update_settings(ctx.platform.db, project_scope(ctx), changes)
    return _settings_out(updated)


async def _import_source(request: Request, fmt: str | None, name: str | None) -> BinaryIO:
    """The whole body, read before the import's transaction starts (see ``api.uploads``). A
    body whose format can be told neither from the request nor from its first bytes is left
    unread: the parser refuses it from those bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
        raise PayloadTooLargeError(f"upload larger than {MAX_UPLOAD_BYTES} bytes")
    body = request.stream().__aiter__()
    head = b""
    if fmt is None and detect_format(name) is None:
        head = await read_head(body, 8)
        if sniff_format(head) is None:
            return io.BytesIO(head)
    return await read_all(body, MAX_UPLOAD_BYTES, head)


@router.post("/imports", status_code=201)
@access(Permission.ITEM_IMPORT, Scope.PROJECT)
async def create_import(
    project_id: uuid.UUID,
    request: Request,
    ctx: Ctx,
    format: Annotated[
        Literal["jsonl", "csv", "text", "zip", "image"] | None,
        Query(description="default: from name or content"),
    ] = None,
    name: Annotated[str | None, Query(max_length=200)] = None,
    on_error: Annotated[Literal["reject", "skip"], Query()] = "reject",
) -> JSONResponse:
    """Upload one file (JSON Lines, CSV, text, a zip of PNG/JPEG images) as the request body.

    The body is read whole into memory (never a temporary file) before the import's
    transaction starts, then parsed and encrypted item by item.
    """
    async with upload_slot():
        source = await _import_source(request, format, name)
        try:
            report = await import_items(
                ctx.platform.db,
                ctx.platform.keys,
                ctx.platform.blobs,
                project_scope(ctx),
                source,
                fmt=format,
                name=name,
                on_error=on_error,
            )
        except ImportRowsError as exc:
            from labelvault.api.problems import problem

            return problem(
                422, exc.message, code="bad_rows", extra={"report": exc.report.as_dict()}
            )
        finally:
            source.close()  # the body's memory goes before the next upload's slot opens
    return JSONResponse(report.as_dict(), status_code=201)


@router.post("/tasks/next")
@access(Permission.TASK_WORK, Scope.PROJECT)
async def next_task(project_id: uuid.UUID, ctx: Ctx) -> Response:
    view = await tasks.next_task(ctx.platform.db, ctx.platform.keys, project_scope(ctx))
    if view is None:
        return Response(status_code=204)
    return JSONResponse(_task_out(view))


@router.get("/tasks/{task_id}")
@access(Permission.TASK_WORK, Scope.PROJECT)
async def get_task(project_id: uuid.UUID, task_id: str, ctx: Ctx) -> dict[str, Any]:
    return _task_out(
        await tasks.get_task(ctx.platform.db, ctx.platform.keys, project_scope(ctx), task_id)
    )


@router.post("/tasks/{task_id}/annotation")
@access(Permission.TASK_WORK, Scope.PROJECT)
async def submit(project_id: uuid.UUID, task_id: str, body: AnnotationIn, ctx: Ctx) -> Response:
    async def reviewers() -> list[uuid.UUID]:  # only when the review share selects this one
        return await identity.project_member_ids(ctx.platform.db, project_id, "reviewer")

    out = await tasks.submit(
        ctx.platform.db, ctx.platform.keys, project_scope(ctx), task_id, body.result, reviewers
    )
    # the annotator loop's hot path: a plain response, no response-model pass
    return JSONResponse({k: str(v) if isinstance(v, uuid.UUID) else v for k, v in out.items()})


@router.post("/tasks/{task_id}/skip", status_code=204)
@access(Permission.TASK_WORK, Scope.PROJECT)
async def skip(project_id: uuid.UUID, task_id: str, ctx: Ctx) -> Response:
    await tasks.skip(ctx.platform.db, project_scope(ctx), task_id)
    return Response(status_code=204)


@router.get("/my/annotations")
@access(Permission.TASK_WORK, Scope.PROJECT)
async def my_annotations(
    project_id: uuid.UUID, ctx: Ctx, limit: Annotated[int, Query(ge=1, le=50)] = 10
) -> list[dict[str, Any]]:
    rows = await tasks.history(ctx.platform.db, ctx.platform.keys, project_scope(ctx), limit=limit)
    return [
        {
            **r,
            "annotation_id": str(r["annotation_id"]),
            "task_id": str(r["task_id"]),
            "updated_at": r["updated_at"].isoformat(),
        }
        for r in rows
    ]


@router.post("/assignments")
@access(Permission.TASK_ASSIGN, Scope.PROJECT)
async def assign(project_id: uuid.UUID, body: AssignmentIn, ctx: Ctx) -> dict[str, int]:
    annotators = await identity.project_member_ids(ctx.platform.db, project_id, "annotator")
    if body.annotator_id not in annotators:
        from labelvault.kernel.errors import NotFoundError

        raise NotFoundError("annotator not found in this project")
    count = await tasks.assign(
        ctx.platform.db,
        project_scope(ctx),
        annotator=body.annotator_id,
        count=body.count,
        import_id=body.import_id,
        gold_only=body.gold_only,
    )
    return {"assigned": count}


@router.get("/aggregates")
@access(Permission.AGGREGATES_READ, Scope.PROJECT)
async def get_aggregates(
    project_id: uuid.UUID, ctx: Ctx, days: Annotated[int, Query(ge=1, le=365)] = 30
) -> dict[str, Any]:
    return await aggregates(ctx.platform.db, ctx.platform.keys, project_scope(ctx), days=days)
