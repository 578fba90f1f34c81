"""The page routes: thin handlers rendering shells plus data the viewer may see.

Each is an ``APIRoute`` declared with ``@access`` like the API (the authorization matrix covers
them). Pages with project content carry none in their HTML: the page's script fetches the one
current task or review from the API and renders it as text.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import RedirectResponse, Response

from labelvault import identity
from labelvault.access import Permission, Role, Scope
from labelvault.api.authn import SESSION_COOKIE
from labelvault.api.security import RequestContext, access, authorize, project_scope
from labelvault.kernel.actor import Actor
from labelvault.kernel.errors import NotFoundError
from labelvault.quality.service import aggregates
from labelvault.tenancy import service as tenancy
from labelvault.web import charts, queries
from labelvault.web.csp import new_nonce, page_headers
from labelvault.web.static import asset
from labelvault.web.templating import render

router = APIRouter(include_in_schema=False)
Ctx = Annotated[RequestContext, Depends(authorize)]
_SAFE_NEXT = re.compile(r"/(?![/\\])[A-Za-z0-9/_\-.~%?=&]*")
DASHBOARD_DAYS = 14


def safe_next(value: str | None) -> str:
    """A same-origin path to go to after signing in, or "/" (no open redirect)."""
    if value and len(value) <= 512 and _SAFE_NEXT.fullmatch(value):
        return value
    return "/"


async def viewer_of(ctx: RequestContext) -> dict[str, Any]:
    actor = ctx.user
    return {
        "id": str(actor.user_id or ""),
        "email": await queries.viewer_email(ctx.platform.db, actor),
        "org_id": str(actor.org_id or ""),
        "is_org_admin": actor.is_org_admin,
        "is_system_admin": actor.is_system_admin,
    }


def _signed_in(actor: Actor | None) -> bool:
    return actor is not None and not actor.mfa_pending and not actor.must_change_password


# -- public --------------------------------------------------------------------------------


@router.get("/")
@access(Permission.PUBLIC, Scope.PUBLIC)
async def home(request: Request, ctx: Ctx) -> Response:
    if not _signed_in(ctx.actor):
        if (
            request.headers.get("sec-fetch-site") == "cross-site"
            and SESSION_COOKIE not in request.cookies
        ):
            # A SameSite=Strict cookie is withheld on the first navigation of a cross-site
            # redirect chain (the SSO return): navigate once more, same-origin, to send it.
            return render(request, "relay.html")
        return RedirectResponse("/login", 303, headers=page_headers(new_nonce()))
    projects = await queries.my_projects(ctx.platform.db, ctx.user)
    return render(request, "home.html", viewer=await viewer_of(ctx), projects=projects)


@router.get("/login")
@access(Permission.PUBLIC, Scope.PUBLIC)
async def login_page(
    request: Request,
    ctx: Ctx,
    next_path: Annotated[str | None, Query(alias="next", max_length=512)] = None,
    org: Annotated[uuid.UUID | None, Query()] = None,
) -> Response:
    return render(
        request,
        "login.html",
        next_path=safe_next(next_path),
        sso_org=str(org) if org else "",
        resume=ctx.actor is not None and not _signed_in(ctx.actor),
    )


@router.get("/static/{name}")
@access(Permission.PUBLIC, Scope.PUBLIC)
async def static_file(name: str, request: Request, ctx: Ctx) -> Response:
    found = asset(name)
    if found is None:
        raise NotFoundError("no such file")
    versioned = request.query_params.get("v") == found.version
    etag = f'"{found.version}"'
    headers = {
        "Cache-Control": "public, max-age=31536000, immutable" if versioned else "no-cache",
        "ETag": etag,
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    }
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(found.body, media_type=found.content_type, headers=headers)


# -- self ------------------------------------------------------------------------------------


@router.get("/account")
@access(Permission.SELF_MANAGE, Scope.SELF)
async def account(request: Request, ctx: Ctx) -> Response:
    sessions = await identity.list_sessions(ctx.platform.db, ctx.user)
    projects = await queries.my_projects(ctx.platform.db, ctx.user)
    return render(
        request,
        "account.html",
        viewer=await viewer_of(ctx),
        sessions=sessions,
        projects=[p for p in projects if p.role],
    )


# -- project pages ---------------------------------------------------------------------------


async def _project_page(
    request: Request, ctx: RequestContext, template: str, **values: Any
) -> Response:
    assert ctx.project_id is not None
    name = await queries.project_name(ctx.platform.db, ctx.user, ctx.project_id)
    return render(
        request,
        template,
        viewer=await viewer_of(ctx),
        project_id=str(ctx.project_id),
        project_name=name,
        role=ctx.project_role.value if ctx.project_role else "",
        **values,
    )


@router.get("/projects/{project_id}/annotate")
@access(Permission.TASK_WORK, Scope.PROJECT)
async def annotate(project_id: uuid.UUID, request: Request, ctx: Ctx) -> Response:
    return await _project_page(request, ctx, "annotate.html")


@router.get("/projects/{project_id}/review")
@access(Permission.REVIEW_WORK, Scope.PROJECT)
async def review(project_id: uuid.UUID, request: Request, ctx: Ctx) -> Response:
    return await _project_page(request, ctx, "review.html")


@router.get("/projects/{project_id}/dashboard")
@access(Permission.AGGREGATES_READ, Scope.PROJECT)
async def dashboard(project_id: uuid.UUID, request: Request, ctx: Ctx) -> Response:
    stats = await aggregates(
        ctx.platform.db, ctx.platform.keys, project_scope(ctx), days=DASHBOARD_DAYS
    )
    today = dt.datetime.now(dt.UTC).date()
    can_assign = Role.MANAGER in ctx.roles or Role.SYSTEM_ADMIN in ctx.roles
    annotators = (
        await queries.project_people(ctx.platform.db, ctx.user, project_id, "annotator")
        if can_assign
        else []
    )
    return await _project_page(
        request,
        ctx,
        "dashboard.html",
        stats=stats,
        charts=[
            charts.progress_chart(stats),
            charts.throughput_chart(stats, days=DASHBOARD_DAYS, today=today),
            charts.quality_chart(stats),
        ],
        annotators=annotators,
        can_assign=can_assign,
        can_export=bool({Role.MANAGER, Role.DATA_OWNER, Role.SYSTEM_ADMIN} & ctx.roles),
    )


@router.get("/projects/{project_id}/data")
@access(Permission.ITEM_IMPORT, Scope.PROJECT)
async def data(project_id: uuid.UUID, request: Request, ctx: Ctx) -> Response:
    return await _project_page(request, ctx, "data.html")


@router.get("/projects/{project_id}/members")
@access(Permission.MEMBER_MANAGE, Scope.PROJECT)
async def members(project_id: uuid.UUID, request: Request, ctx: Ctx) -> Response:
    rows = await identity.list_memberships(ctx.platform.db, ctx.user, project_id=project_id)
    assert ctx.org_id is not None
    users = {u.id: u for u in await identity.list_users(ctx.platform.db, ctx.user, ctx.org_id)}
    return await _project_page(
        request,
        ctx,
        "members.html",
        members=[
            {
                "user_id": str(m.user_id),
                "email": users[m.user_id].email if m.user_id in users else str(m.user_id),
                "role": m.role,
            }
            for m in rows
        ],
        users=[{"id": str(u.id), "email": u.email} for u in users.values()],
    )


@router.get("/projects/{project_id}/audit")
@access(Permission.AUDIT_READ, Scope.PROJECT)
async def project_audit(project_id: uuid.UUID, request: Request, ctx: Ctx) -> Response:
    return await _project_page(
        request,
        ctx,
        "audit.html",
        endpoint=f"/api/v1/projects/{project_id}/audit",
        scope_name="project",
    )


# -- organization and system administration -------------------------------------------------


async def _org_page(
    request: Request, ctx: RequestContext, template: str, **values: Any
) -> Response:
    assert ctx.org_id is not None
    org = await tenancy.get_organization(ctx.platform.db, ctx.user, ctx.org_id)
    return render(
        request, template, viewer=await viewer_of(ctx), org=org, org_id=str(ctx.org_id), **values
    )


@router.get("/orgs/{org_id}/admin")
@access(Permission.USER_MANAGE, Scope.ORG)
async def org_admin(org_id: uuid.UUID, request: Request, ctx: Ctx) -> Response:
    users = await identity.list_users(ctx.platform.db, ctx.user, org_id)
    projects = await tenancy.list_projects(ctx.platform.db, ctx.user, org_id=org_id)
    return await _org_page(
        request,
        ctx,
        "org_admin.html",
        users=[dataclasses.asdict(u) for u in users],
        projects=projects,
    )


@router.get("/orgs/{org_id}/access-review")
@access(Permission.ACCESS_REVIEW, Scope.ORG)
async def access_review(org_id: uuid.UUID, request: Request, ctx: Ctx) -> Response:
    rows = await identity.access_review(ctx.platform.db, ctx.user, org_id)
    return await _org_page(request, ctx, "access_review.html", rows=rows)


@router.get("/orgs/{org_id}/audit")
@access(Permission.AUDIT_READ, Scope.ORG)
async def org_audit(org_id: uuid.UUID, request: Request, ctx: Ctx) -> Response:
    return await _org_page(
        request,
        ctx,
        "audit.html",
        endpoint=f"/api/v1/orgs/{org_id}/audit",
        scope_name="organization",
        project_id="",
        project_name="",
    )


@router.get("/admin")
@access(Permission.ORG_CREATE, Scope.SYSTEM)
async def system_admin(request: Request, ctx: Ctx) -> Response:
    orgs = await tenancy.list_organizations(ctx.platform.db, ctx.user)
    return render(request, "system_admin.html", viewer=await viewer_of(ctx), orgs=orgs)
