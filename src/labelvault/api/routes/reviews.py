"""The reviewer's queue and decisions."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse, Response

from labelvault.access import Permission, Scope
from labelvault.api.security import RequestContext, access, authorize, project_scope
from labelvault.review import service as reviews

router = APIRouter(prefix="/api/v1/projects/{project_id}/reviews", tags=["review"])
Ctx = Annotated[RequestContext, Depends(authorize)]


class DecisionIn(BaseModel):
    model_config = {"extra": "forbid"}
    decision: Literal["accept", "reject", "correct"]
    comment: str | None = Field(default=None, max_length=4000)
    result: dict[str, Any] | None = None


def _jsonable(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


@router.get("")
@access(Permission.REVIEW_WORK, Scope.PROJECT)
async def review_queue(
    project_id: uuid.UUID, ctx: Ctx, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> list[dict[str, Any]]:
    rows = await reviews.queue(ctx.platform.db, project_scope(ctx), limit=limit)
    return [{k: _jsonable(v) for k, v in r.items()} for r in rows]


@router.post("/next")
@access(Permission.REVIEW_WORK, Scope.PROJECT)
async def next_review(project_id: uuid.UUID, ctx: Ctx) -> Response:
    review = await reviews.get_review(ctx.platform.db, ctx.platform.keys, project_scope(ctx))
    if review is None:
        return Response(status_code=204)
    return JSONResponse({k: _jsonable(v) for k, v in review.items()})


@router.get("/{review_id}")
@access(Permission.REVIEW_WORK, Scope.PROJECT)
async def get_review(project_id: uuid.UUID, review_id: str, ctx: Ctx) -> dict[str, Any]:
    review = await reviews.get_review(
        ctx.platform.db, ctx.platform.keys, project_scope(ctx), review_id
    )
    assert review is not None
    return {k: _jsonable(v) for k, v in review.items()}


@router.post("/{review_id}/decision")
@access(Permission.REVIEW_WORK, Scope.PROJECT)
async def decide(
    project_id: uuid.UUID, review_id: str, body: DecisionIn, ctx: Ctx
) -> dict[str, Any]:
    out = await reviews.decide(
        ctx.platform.db,
        ctx.platform.keys,
        project_scope(ctx),
        review_id,
        body.decision,
        comment=body.comment,
        corrected=body.result,
    )
    return {k: _jsonable(v) for k, v in out.items()}
