"""API tokens of the signed-in user."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from starlette.responses import Response

from labelvault import identity
from labelvault.access import Permission, Scope
from labelvault.api.schemas import CreatedTokenOut, TokenIn, TokenOut
from labelvault.api.security import RequestContext, access, authorize

router = APIRouter(prefix="/api/v1/tokens", tags=["tokens"])
Ctx = Annotated[RequestContext, Depends(authorize)]


def _out(info: identity.TokenInfo) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(info).items() if k != "user_id"}


@router.get("", response_model=list[TokenOut])
@access(Permission.SELF_MANAGE, Scope.SELF)
async def list_tokens(ctx: Ctx) -> list[TokenOut]:
    return [TokenOut(**_out(t)) for t in await identity.list_tokens(ctx.platform.db, ctx.user)]


@router.post("", response_model=CreatedTokenOut, status_code=201)
@access(Permission.SELF_MANAGE, Scope.SELF)
async def create_token(body: TokenIn, ctx: Ctx) -> CreatedTokenOut:
    created = await identity.create_token(
        ctx.platform.db,
        ctx.user,
        name=body.name,
        project_ids=body.project_ids,
        max_role=body.max_role,
        expires_in_days=body.expires_in_days,
    )
    return CreatedTokenOut(token=created.token, **_out(created.info))


@router.delete("/{token_id}", status_code=204)
@access(Permission.SELF_MANAGE, Scope.SELF)
async def revoke_token(token_id: uuid.UUID, ctx: Ctx) -> Response:
    await identity.revoke_token(ctx.platform.db, ctx.user, token_id)
    return Response(status_code=204)
