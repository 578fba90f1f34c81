"""Reading and exporting the audit trail (DESIGN invariant 5). Every read is itself audited."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel
from starlette.responses import StreamingResponse

from labelvault.access import Permission, Scope
from labelvault.api.security import RequestContext, access, authorize
from labelvault.audit import trail

router = APIRouter(prefix="/api/v1", tags=["audit"])
Ctx = Annotated[RequestContext, Depends(authorize)]


class AuditPageOut(BaseModel):
    events: list[dict[str, Any]]
    next_cursor: int | None


def _filters(
    user: Annotated[str | None, Query(max_length=200, description="actor id")] = None,
    action: Annotated[
        str | None, Query(max_length=200, description="an action, or a prefix like auth.*")
    ] = None,
    resource_type: Annotated[str | None, Query(max_length=200)] = None,
    resource_id: Annotated[str | None, Query(max_length=200)] = None,
    since: Annotated[datetime | None, Query(description="ISO 8601 time (inclusive)")] = None,
    until: Annotated[datetime | None, Query(description="ISO 8601 time (inclusive)")] = None,
    cursor: Annotated[int | None, Query(ge=0, description="next_cursor of the last page")] = None,
    limit: Annotated[int, Query(ge=1, le=trail.MAX_LIMIT)] = trail.DEFAULT_LIMIT,
    order: Literal["asc", "desc"] = "desc",
) -> trail.TrailFilters:
    return trail.TrailFilters(
        actor_id=user,
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        since=since,
        until=until,
        cursor=cursor,
        limit=limit,
        order=order,
    )


Filters = Annotated[trail.TrailFilters, Depends(_filters)]


@router.get("/projects/{project_id}/audit", response_model=AuditPageOut)
@access(Permission.AUDIT_READ, Scope.PROJECT)
async def project_trail(project_id: uuid.UUID, filters: Filters, ctx: Ctx) -> AuditPageOut:
    page = await trail.read_project_trail(
        ctx.platform, ctx.user, ctx.roles, project_id, filters, org_id=ctx.org_id
    )
    return AuditPageOut(events=page.events, next_cursor=page.next_cursor)


@router.get("/projects/{project_id}/audit/export")
@access(Permission.AUDIT_READ, Scope.PROJECT)
async def project_trail_export(project_id: uuid.UUID, ctx: Ctx) -> StreamingResponse:
    """The whole project trail as JSON Lines, ending with the signed checkpoints that verify it
    (``labelvault audit verify-export FILE --public-key KEY``)."""
    lines = await trail.export_project_trail(
        ctx.platform, ctx.user, ctx.roles, project_id, org_id=ctx.org_id
    )
    return StreamingResponse(
        lines,
        media_type="application/x-ndjson",
        headers={
            "cache-control": "no-store",
            "content-disposition": f'attachment; filename="audit-{project_id}.jsonl"',
        },
    )


@router.get("/orgs/{org_id}/audit", response_model=AuditPageOut)
@access(Permission.AUDIT_READ, Scope.ORG)
async def org_trail(org_id: uuid.UUID, filters: Filters, ctx: Ctx) -> AuditPageOut:
    page = await trail.read_org_trail(ctx.platform, ctx.user, org_id, filters)
    return AuditPageOut(events=page.events, next_cursor=page.next_cursor)
