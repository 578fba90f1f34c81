"""Who is calling: an API token (``Authorization: Bearer lv_…``) or a session cookie.

Both are looked up in the database on every request. Cookie-authenticated requests that change
state must carry the session's CSRF token (``X-CSRF-Token`` header or ``csrf_token`` form field);
token-authenticated requests cannot be forged cross-site, as browsers never attach them.
"""

from __future__ import annotations

import datetime as dt
import uuid

from starlette.requests import Request

from labelvault.identity import SessionPolicy, check_csrf, resolve_session, resolve_token
from labelvault.identity.memberships import ProjectAccess
from labelvault.identity.request_access import token_project_access
from labelvault.identity.tokens import AfterAuthentication
from labelvault.kernel.actor import Actor
from labelvault.kernel.errors import PermissionDeniedError, UnauthenticatedError
from labelvault.platform import Platform

SESSION_COOKIE = "__Host-lv_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def session_policy(platform: Platform) -> SessionPolicy:
    s = platform.settings
    return SessionPolicy(
        idle=dt.timedelta(minutes=s.session_idle_minutes),
        absolute=dt.timedelta(hours=s.session_absolute_hours),
    )


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


async def token_fast_lane(
    platform: Platform, request: Request, project_id: uuid.UUID
) -> tuple[Actor, ProjectAccess] | None:
    """A bearer token's actor and roles in the path's project in one statement, when nothing
    about the token needs recording; None sends the request down ``authenticate_request``."""
    authorization = request.headers.get("authorization")
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value:
        return None
    state = request.scope.get("state", {})
    return await token_project_access(
        platform.db,
        value.strip(),
        project_id,
        source_address=client_address(request),
        user_agent=request.headers.get("user-agent"),
        request_id=state.get("request_id"),
    )


async def authenticate_request(
    platform: Platform,
    request: Request,
    *,
    required: bool,
    then: AfterAuthentication | None = None,
) -> Actor | None:
    state = request.scope.get("state", {})
    request_id = state.get("request_id")
    address = client_address(request)
    agent = request.headers.get("user-agent")
    authorization = request.headers.get("authorization")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value:
            raise UnauthenticatedError("use 'Authorization: Bearer <API token>'")
        return await resolve_token(
            platform.db,
            value.strip(),
            source_address=address,
            user_agent=agent,
            request_id=request_id,
            then=then,
        )
    secret = request.cookies.get(SESSION_COOKIE)
    if secret:
        actor = await resolve_session(
            platform.db,
            secret,
            policy=session_policy(platform),
            source_address=address,
            user_agent=agent,
            request_id=request_id,
            then=then,
        )
        if actor is not None:
            if request.method not in SAFE_METHODS:
                token = request.headers.get(CSRF_HEADER)
                if token is None and "form" in request.headers.get("content-type", ""):
                    token = str((await request.form()).get("csrf_token") or "") or None
                if not check_csrf(secret, token):
                    raise PermissionDeniedError("missing or invalid CSRF token")
            state["session_secret"] = secret
            return actor
    if required:
        raise UnauthenticatedError("authentication required")
    return None
