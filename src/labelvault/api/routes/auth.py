"""Sign-in, second factor, sessions, re-authentication and password changes."""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import JSONResponse, Response

from labelvault import identity
from labelvault.access import Permission, Scope
from labelvault.api.authn import SESSION_COOKIE, client_address, session_policy
from labelvault.api.schemas import (
    CodeIn,
    LoginIn,
    LoginOut,
    PasswordChangeIn,
    PasswordIn,
    RecoveryCodesOut,
    SessionOut,
    SessionStateOut,
    TotpBeginOut,
    UserOut,
)
from labelvault.api.security import RequestContext, access, authorize

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])
Ctx = Annotated[RequestContext, Depends(authorize)]


def set_session_cookie(response: Response, secret: str, ctx: RequestContext) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=ctx.platform.settings.session_absolute_hours * 3600,
        path="/",
        secure=True,
        httponly=True,
        samesite="strict",
    )


def _login_out(new: identity.NewSession) -> LoginOut:
    return LoginOut(
        mfa_required=new.mfa_pending,
        mfa_enrollment_required=new.mfa_enrollment_required,
        password_change_required=new.must_change_password,
        csrf_token=identity.csrf_token(new.secret),
    )


@router.post("/login", response_model=LoginOut)
@access(Permission.PUBLIC, Scope.PUBLIC)
async def login(body: LoginIn, request: Request, ctx: Ctx) -> JSONResponse:
    new = await identity.login_with_password(
        ctx.platform.db,
        email=body.email,
        password=body.password,
        policy=session_policy(ctx.platform),
        source_address=client_address(request),
        user_agent=request.headers.get("user-agent"),
        request_id=ctx.request_id,
    )
    response = JSONResponse(_login_out(new).model_dump())
    set_session_cookie(response, new.secret, ctx)
    return response


@router.post("/mfa/verify", response_model=LoginOut)
@access(Permission.SELF_MANAGE, Scope.SELF, allow_incomplete=True)
async def mfa_verify(body: CodeIn, ctx: Ctx) -> JSONResponse:
    new = await identity.verify_second_factor(
        ctx.platform.db,
        ctx.platform.sealer,
        ctx.user,
        code=body.code,
        policy=session_policy(ctx.platform),
    )
    response = JSONResponse(_login_out(new).model_dump())
    set_session_cookie(response, new.secret, ctx)
    return response


@router.post("/mfa/totp/begin", response_model=TotpBeginOut)
@access(Permission.SELF_MANAGE, Scope.SELF, allow_incomplete=True)
async def totp_begin(ctx: Ctx) -> TotpBeginOut:
    user = await identity.get_user(ctx.platform.db, ctx.user, ctx.user.user_id or "")
    enrollment = await identity.begin_totp(
        ctx.platform.db, ctx.platform.sealer, ctx.user, account=user.email
    )
    return TotpBeginOut(secret=enrollment.secret, otpauth_uri=enrollment.uri)


@router.post("/mfa/totp/confirm", response_model=RecoveryCodesOut)
@access(Permission.SELF_MANAGE, Scope.SELF, allow_incomplete=True)
async def totp_confirm(body: CodeIn, ctx: Ctx) -> RecoveryCodesOut:
    codes = await identity.confirm_totp(
        ctx.platform.db, ctx.platform.sealer, ctx.user, code=body.code
    )
    return RecoveryCodesOut(recovery_codes=codes)


@router.get("/session", response_model=SessionStateOut)
@access(Permission.SELF_MANAGE, Scope.SELF, allow_incomplete=True)
async def session_state(request: Request, ctx: Ctx) -> SessionStateOut:
    user = await identity.get_user(ctx.platform.db, ctx.user, ctx.user.user_id or "")
    secret = request.scope.get("state", {}).get("session_secret")
    return SessionStateOut(
        user=UserOut(**dataclasses.asdict(user)),
        mfa_pending=ctx.user.mfa_pending,
        mfa_enrollment_required=ctx.user.mfa_enrollment_required,
        password_change_required=ctx.user.must_change_password,
        csrf_token=identity.csrf_token(secret) if secret else None,
    )


@router.post("/logout", status_code=204)
@access(Permission.SELF_MANAGE, Scope.SELF, allow_incomplete=True)
async def logout(request: Request, ctx: Ctx) -> Response:
    secret = request.scope.get("state", {}).get("session_secret")
    if secret:
        await identity.end_session(ctx.platform.db, secret, ctx.user)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    response.headers["Clear-Site-Data"] = '"cache", "cookies", "storage"'
    return response


@router.post("/logout-all", status_code=204)
@access(Permission.SELF_MANAGE, Scope.SELF)
async def logout_all(ctx: Ctx) -> Response:
    await identity.end_all_sessions(ctx.platform.db, ctx.user)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response


@router.get("/sessions", response_model=list[SessionOut])
@access(Permission.SELF_MANAGE, Scope.SELF)
async def sessions(ctx: Ctx) -> list[SessionOut]:
    return [
        SessionOut(**{k: v for k, v in dataclasses.asdict(s).items() if k != "user_id"})
        for s in await identity.list_sessions(ctx.platform.db, ctx.user)
    ]


@router.post("/reauth", status_code=204)
@access(Permission.SELF_MANAGE, Scope.SELF)
async def reauth(body: PasswordIn, ctx: Ctx) -> Response:
    await identity.reauthenticate(ctx.platform.db, ctx.user, password=body.password)
    return Response(status_code=204)


@router.post("/password", status_code=204)
@access(Permission.SELF_MANAGE, Scope.SELF, allow_incomplete=True)
async def change_password(body: PasswordChangeIn, ctx: Ctx) -> Response:
    if ctx.user.mfa_pending:
        from labelvault.kernel.errors import UnauthenticatedError

        raise UnauthenticatedError("finish signing in first: enter your second factor")
    await identity.change_password(
        ctx.platform.db, ctx.user, current=body.current_password, new=body.new_password
    )
    return Response(status_code=204)
