"""A project and its memberships."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends
from starlette.responses import Response

from labelvault import identity
from labelvault.access import Permission, Scope
from labelvault.api.schemas import MembershipIn, MembershipOut, ProjectOut
from labelvault.api.security import RequestContext, access, authorize
from labelvault.tenancy import service as tenancy

router = APIRouter(prefix="/api/v1/projects", tags=["projects"])
Ctx = Annotated[RequestContext, Depends(authorize)]


@router.get("/{project_id}", response_model=ProjectOut)
@access(Permission.PROJECT_READ, Scope.PROJECT)
async def get_project(project_id: uuid.UUID, ctx: Ctx) -> ProjectOut:
    project = await tenancy.get_project(ctx.platform.db, ctx.user, project_id)
    return ProjectOut(**dataclasses.asdict(project))


@router.get("/{project_id}/members", response_model=list[MembershipOut])
@access(Permission.MEMBER_MANAGE, Scope.PROJECT)
async def list_members(project_id: uuid.UUID, ctx: Ctx) -> list[MembershipOut]:
    members = await identity.list_memberships(ctx.platform.db, ctx.user, project_id=project_id)
    return [
        MembershipOut(**{k: v for k, v in dataclasses.asdict(m).items() if k != "org_id"})
        for m in members
    ]


@router.put("/{project_id}/members/{user_id}", response_model=MembershipOut)
@access(Permission.MEMBER_MANAGE, Scope.PROJECT)
async def set_member(
    project_id: uuid.UUID, user_id: uuid.UUID, body: MembershipIn, ctx: Ctx
) -> MembershipOut:
    m = await identity.set_membership(
        ctx.platform.db, ctx.user, project_id=project_id, user_id=user_id, role=body.role
    )
    return MembershipOut(
        project_id=m.project_id, user_id=m.user_id, role=m.role, created_at=m.created_at
    )


@router.delete("/{project_id}/members/{user_id}", status_code=204)
@access(Permission.MEMBER_MANAGE, Scope.PROJECT)
async def remove_member(project_id: uuid.UUID, user_id: uuid.UUID, ctx: Ctx) -> Response:
    await identity.remove_membership(
        ctx.platform.db, ctx.user, project_id=project_id, user_id=user_id
    )
    return Response(status_code=204)
