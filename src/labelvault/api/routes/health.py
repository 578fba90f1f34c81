"""Liveness and readiness: ``/healthz`` says whether the database answers, nothing more."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from starlette.responses import JSONResponse

from labelvault.access import Permission, Scope
from labelvault.api.security import RequestContext, access, authorize

router = APIRouter()


@router.get("/healthz", tags=["health"])
@access(Permission.PUBLIC, Scope.PUBLIC)
async def healthz(ctx: Annotated[RequestContext, Depends(authorize)]) -> JSONResponse:
    try:
        async with ctx.platform.db.control_pool.connection(timeout=2) as conn:
            await conn.execute("SELECT 1")
    except Exception:
        return JSONResponse(
            {"status": "unavailable"}, status_code=503, headers={"cache-control": "no-store"}
        )
    return JSONResponse({"status": "ok"}, headers={"cache-control": "no-store"})
