"""Single sign-on: an organization's OpenID Connect provider and the browser login round trip.

``GET /api/v1/auth/sso/{org_id}/start`` redirects to the provider and sets ``__Host-lv_sso``,
the secret binding the pending login to this browser (HttpOnly; SameSite=Lax, because the
provider's redirect back is a top-level cross-site GET). The callback consumes the pending login,
sets the session cookie, clears the binding cookie and redirects (303) to the local path the
login started from, or answers JSON when asked to.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Annotated

import httpx
from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from labelvault.access import Permission, Scope
from labelvault.api.authn import client_address, session_policy
from labelvault.api.problems import problem
from labelvault.api.routes.auth import set_session_cookie
from labelvault.api.schemas import LoginOut, SsoIdentityLinkIn, SsoSettingsIn, SsoSettingsOut
from labelvault.api.security import RequestContext, access, authorize
from labelvault.auth.oidc import HTTP_TIMEOUT_SECONDS
from labelvault.identity import csrf_token, sso
from labelvault.kernel.errors import UnauthenticatedError
from labelvault.kernel.ids import parse_id

router = APIRouter(tags=["sso"])
Ctx = Annotated[RequestContext, Depends(authorize)]

SSO_COOKIE = "__Host-lv_sso"
CALLBACK_PATH = "/api/v1/auth/sso/callback"
NO_STORE = {"Cache-Control": "no-store"}


def redirect_uri(request: Request, ctx: RequestContext) -> str:
    base = ctx.platform.settings.public_url or str(request.base_url)
    return base.rstrip("/") + CALLBACK_PATH


def _http() -> httpx.AsyncClient:
    """A fresh client per call: TLS verified, no redirects followed, bounded time."""
    return httpx.AsyncClient(timeout=HTTP_TIMEOUT_SECONDS, follow_redirects=False)


def _settings_out(
    settings: sso.SsoSettings, request: Request, ctx: RequestContext
) -> SsoSettingsOut:
    return SsoSettingsOut(**dataclasses.asdict(settings), redirect_uri=redirect_uri(request, ctx))


def _clear_binding(response: Response) -> None:
    response.delete_cookie(SSO_COOKIE, path="/", secure=True, httponly=True, samesite="lax")


# -- administration ----------------------------------------------------------------------------


@router.put("/api/v1/orgs/{org_id}/sso", response_model=SsoSettingsOut)
@access(Permission.ORG_MANAGE, Scope.ORG)
async def put_sso(
    org_id: uuid.UUID, body: SsoSettingsIn, request: Request, ctx: Ctx
) -> SsoSettingsOut:
    settings = await sso.configure_provider(
        ctx.platform.db,
        ctx.platform.sealer,
        ctx.user,
        org_id,
        issuer=body.issuer,
        client_id=body.client_id,
        client_secret=body.client_secret,
        allowed_algs=body.allowed_algs,
        require_sso=body.require_sso,
        jit=body.jit,
        default_role=body.default_role,
        default_project_id=body.default_project_id,
    )
    return _settings_out(settings, request, ctx)


@router.get("/api/v1/orgs/{org_id}/sso", response_model=SsoSettingsOut)
@access(Permission.ORG_MANAGE, Scope.ORG)
async def get_sso(org_id: uuid.UUID, request: Request, ctx: Ctx) -> SsoSettingsOut:
    settings = await sso.get_provider_settings(ctx.platform.db, ctx.user, org_id)
    return _settings_out(settings, request, ctx)


@router.delete("/api/v1/orgs/{org_id}/sso", status_code=204)
@access(Permission.ORG_MANAGE, Scope.ORG)
async def delete_sso(org_id: uuid.UUID, ctx: Ctx) -> Response:
    await sso.delete_provider(ctx.platform.db, ctx.user, org_id)
    return Response(status_code=204)


@router.post("/api/v1/orgs/{org_id}/sso/identities", status_code=204)
@access(Permission.ORG_MANAGE, Scope.ORG)
async def link_sso_identity(org_id: uuid.UUID, body: SsoIdentityLinkIn, ctx: Ctx) -> Response:
    await sso.link_identity(
        ctx.platform.db, ctx.user, org_id, user_id=body.user_id, subject=body.subject
    )
    return Response(status_code=204)


# -- the login round trip ----------------------------------------------------------------------


@router.get("/api/v1/auth/sso/{org_id}/start", status_code=302)
@access(Permission.PUBLIC, Scope.PUBLIC)
async def sso_start(
    org_id: str,
    request: Request,
    ctx: Ctx,
    next_path: Annotated[str, Query(alias="next", max_length=512)] = "/",
    login_hint: Annotated[str | None, Query(max_length=254)] = None,
) -> Response:
    org = parse_id(org_id, what="organization")
    async with _http() as http:
        url, binding = await sso.begin_sso(
            ctx.platform.db,
            ctx.platform.sealer,
            org,
            redirect_uri(request, ctx),
            http,
            next_path=next_path,
            login_hint=login_hint,
            source_address=client_address(request),
        )
    response = RedirectResponse(url, status_code=302, headers=NO_STORE)
    response.set_cookie(
        SSO_COOKIE,
        binding,
        max_age=int(sso.PENDING_TTL.total_seconds()),
        path="/",
        secure=True,
        httponly=True,
        samesite="lax",
    )
    return response


@router.get("/api/v1/auth/sso/callback", response_model=LoginOut)
@access(Permission.PUBLIC, Scope.PUBLIC)
async def sso_callback(
    request: Request,
    ctx: Ctx,
    state: Annotated[str | None, Query(max_length=512)] = None,
    code: Annotated[str | None, Query(max_length=4096)] = None,
    iss: Annotated[str | None, Query(max_length=2048)] = None,
    error: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    try:
        async with _http() as http:
            new = await sso.complete_sso(
                ctx.platform.db,
                ctx.platform.sealer,
                state=state,
                code=code,
                iss=iss,
                binding_secret=request.cookies.get(SSO_COOKIE),
                http=http,
                policy=session_policy(ctx.platform),
                source_address=client_address(request),
                user_agent=request.headers.get("user-agent"),
                request_id=ctx.request_id,
                provider_error=error,
            )
    except UnauthenticatedError as exc:
        failed = problem(401, exc.message, code=exc.code, headers=NO_STORE)
        _clear_binding(failed)
        return failed
    response: Response
    if "application/json" in request.headers.get("accept", ""):
        response = JSONResponse(
            LoginOut(
                mfa_required=new.mfa_pending,
                mfa_enrollment_required=new.mfa_enrollment_required,
                password_change_required=new.must_change_password,
                csrf_token=csrf_token(new.secret),
            ).model_dump(),
            headers=NO_STORE,
        )
    else:
        response = RedirectResponse(new.next_path, status_code=303, headers=NO_STORE)
    set_session_cookie(response, new.secret, ctx)
    _clear_binding(response)
    return response
