"""Organizations and what their administrators manage: users, projects, the access review."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends
from starlette.responses import Response

from labelvault import identity
from labelvault.access import Permission, Scope
from labelvault.api.schemas import (
    AccessReviewRow,
    CreatedUserOut,
    OrgIn,
    OrgOut,
    ProjectIn,
    ProjectOut,
    UserIn,
    UserOut,
)
from labelvault.api.security import RequestContext, access, authorize
from labelvault.kernel.errors import NotFoundError
from labelvault.tenancy import service as tenancy

router = APIRouter(prefix="/api/v1/orgs", tags=["organizations"])
Ctx = Annotated[RequestContext, Depends(authorize)]


@router.get("", response_model=list[OrgOut])
@access(Permission.ORG_CREATE, Scope.SYSTEM)
async def list_orgs(ctx: Ctx) -> list[OrgOut]:
    orgs = await tenancy.list_organizations(ctx.platform.db, ctx.user)
    return [OrgOut(**dataclasses.asdict(o)) for o in orgs]


@router.post("", response_model=OrgOut, status_code=201)
@access(Permission.ORG_CREATE, Scope.SYSTEM)
async def create_org(body: OrgIn, ctx: Ctx) -> OrgOut:
    org = await tenancy.create_organization(
        ctx.platform.db, ctx.user, name=body.name, region=body.region
    )
    return OrgOut(**dataclasses.asdict(org))


@router.get("/{org_id}", response_model=OrgOut)
@access(Permission.ORG_READ, Scope.ORG)
async def get_org(org_id: uuid.UUID, ctx: Ctx) -> OrgOut:
    return OrgOut(
        **dataclasses.asdict(await tenancy.get_organization(ctx.platform.db, ctx.user, org_id))
    )


@router.get("/{org_id}/users", response_model=list[UserOut])
@access(Permission.USER_MANAGE, Scope.ORG)
async def list_users(org_id: uuid.UUID, ctx: Ctx) -> list[UserOut]:
    return [
        UserOut(**dataclasses.asdict(u))
        for u in await identity.list_users(ctx.platform.db, ctx.user, org_id)
    ]


@router.post("/{org_id}/users", response_model=CreatedUserOut, status_code=201)
@access(Permission.USER_MANAGE, Scope.ORG)
async def create_user(org_id: uuid.UUID, body: UserIn, ctx: Ctx) -> CreatedUserOut:
    password = identity.one_time_password()
    user = await identity.create_user(
        ctx.platform.db,
        ctx.user,
        email=body.email,
        org_id=org_id,
        display_name=body.display_name,
        password=password,
        is_org_admin=body.is_org_admin,
        must_change=True,
    )
    return CreatedUserOut(one_time_password=password, **dataclasses.asdict(user))


async def _user_in_org(ctx: RequestContext, org_id: uuid.UUID, user_id: uuid.UUID) -> None:
    user = await identity.get_user(ctx.platform.db, ctx.user, user_id)
    if user.org_id != org_id:
        raise NotFoundError("user not found")


@router.post("/{org_id}/users/{user_id}/disable", response_model=UserOut)
@access(Permission.USER_MANAGE, Scope.ORG)
async def disable_user(org_id: uuid.UUID, user_id: uuid.UUID, ctx: Ctx) -> UserOut:
    await _user_in_org(ctx, org_id, user_id)
    user = await identity.set_user_status(ctx.platform.db, ctx.user, user_id, disabled=True)
    return UserOut(**dataclasses.asdict(user))


@router.post("/{org_id}/users/{user_id}/enable", response_model=UserOut)
@access(Permission.USER_MANAGE, Scope.ORG)
async def enable_user(org_id: uuid.UUID, user_id: uuid.UUID, ctx: Ctx) -> UserOut:
    await _user_in_org(ctx, org_id, user_id)
    user = await identity.set_user_status(ctx.platform.db, ctx.user, user_id, disabled=False)
    return UserOut(**dataclasses.asdict(user))


@router.post("/{org_id}/users/{user_id}/reset-mfa", status_code=204)
@access(Permission.USER_MANAGE, Scope.ORG)
async def reset_mfa(org_id: uuid.UUID, user_id: uuid.UUID, ctx: Ctx) -> Response:
    await _user_in_org(ctx, org_id, user_id)
    await identity.reset_mfa(ctx.platform.db, ctx.user, user_id)
    return Response(status_code=204)


@router.post("/{org_id}/users/{user_id}/unlock", status_code=204)
@access(Permission.USER_MANAGE, Scope.ORG)
async def unlock_user(org_id: uuid.UUID, user_id: uuid.UUID, ctx: Ctx) -> Response:
    await _user_in_org(ctx, org_id, user_id)
    user = await identity.get_user(ctx.platform.db, ctx.user, user_id)
    await identity.lift_sign_in_lock(ctx.platform.db, ctx.user, user)
    return Response(status_code=204)


@router.get("/{org_id}/access-review", response_model=list[AccessReviewRow])
@access(Permission.ACCESS_REVIEW, Scope.ORG)
async def access_review(org_id: uuid.UUID, ctx: Ctx) -> list[AccessReviewRow]:
    rows = await identity.access_review(ctx.platform.db, ctx.user, org_id)
    return [AccessReviewRow(**r) for r in rows]


@router.get("/{org_id}/projects", response_model=list[ProjectOut])
@access(Permission.ORG_READ, Scope.ORG)
async def list_projects(org_id: uuid.UUID, ctx: Ctx) -> list[ProjectOut]:
    projects = await tenancy.list_projects(ctx.platform.db, ctx.user, org_id=org_id)
    return [ProjectOut(**dataclasses.asdict(p)) for p in projects]


@router.post("/{org_id}/projects", response_model=ProjectOut, status_code=201)
@access(Permission.PROJECT_CREATE, Scope.ORG)
async def create_project(org_id: uuid.UUID, body: ProjectIn, ctx: Ctx) -> ProjectOut:
    project = await tenancy.create_project(
        ctx.platform.db,
        ctx.platform.sealer,
        ctx.user,
        org_id=org_id,
        name=body.name,
        region=body.region,
    )
    return ProjectOut(**dataclasses.asdict(project))
