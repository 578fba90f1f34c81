"""Route declarations and the authorization step every route goes through.

A route declares one ``Permission`` and the ``Scope`` it is checked in with ``@access(...)``;
``create_app`` refuses to start if any route lacks a declaration. ``authorize`` then
authenticates the caller (session cookie or API token, looked up in the database on every
request), resolves their roles in the path's organization or project, and answers 404 for what
the caller may not know exists and 403 only for what they can see but not do.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import Depends, Request

from labelvault.access import Permission, ProjectScope, Role, Scope, can
from labelvault.api.authn import authenticate_request, token_fast_lane
from labelvault.identity import roles_in_project
from labelvault.identity.memberships import ProjectAccess
from labelvault.kernel.actor import Actor
from labelvault.kernel.errors import (
    LabelVaultError,
    MisdirectedError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from labelvault.kernel.ids import parse_id
from labelvault.platform import Platform

ACCESS_ATTR = "__lv_access__"
F = TypeVar("F", bound=Callable[..., Any])


class RouteDeclarationError(LabelVaultError):
    code = "route_declaration"


@dataclass(frozen=True)
class Access:
    permission: Permission
    scope: Scope
    # reachable while sign-in is incomplete (second factor or password change pending)
    allow_incomplete: bool = False


def access(
    permission: Permission, scope: Scope, *, allow_incomplete: bool = False
) -> Callable[[F], F]:
    def declare(fn: F) -> F:
        setattr(fn, ACCESS_ATTR, Access(permission, scope, allow_incomplete))
        return fn

    return declare


@dataclass
class RequestContext:
    platform: Platform
    actor: Actor | None
    access: Access
    roles: frozenset[Role] = frozenset()
    project_id: uuid.UUID | None = None
    org_id: uuid.UUID | None = None
    request_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def user(self) -> Actor:
        if self.actor is None:
            raise UnauthenticatedError("authentication required")
        return self.actor

    @property
    def project_role(self) -> Role | None:
        for role in (Role.MANAGER, Role.DATA_OWNER, Role.REVIEWER, Role.ANNOTATOR):
            if role in self.roles:
                return role
        return None


def platform_of(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


async def authorize(request: Request) -> RequestContext:
    route = request.scope.get("route")
    declared: Access | None = getattr(getattr(route, "endpoint", None), ACCESS_ATTR, None)
    if declared is None:  # create_app guarantees this cannot happen; fail closed regardless
        raise PermissionDeniedError("route has no permission declaration")
    platform = platform_of(request)
    state = request.scope.get("state", {})
    ctx = RequestContext(platform, None, declared, request_id=state.get("request_id", ""))
    # a project route: look the caller's roles up in the transaction that authenticates them
    project_id: uuid.UUID | None = None
    access: list[ProjectAccess] = []
    then = None
    if declared.scope == Scope.PROJECT:
        # a malformed id is answered after authentication (401 before 404)
        with contextlib.suppress(NotFoundError):
            project_id = parse_id(request.path_params.get("project_id", ""), what="project")
    actor: Actor | None = None
    if project_id is not None:
        target = project_id

        async def then(conn: Any, who: Actor) -> None:
            access.append(await roles_in_project(platform.db, who, target, conn=conn))

        fast = await token_fast_lane(platform, request, project_id)
        if fast is not None:
            actor, known = fast
            access.append(known)
    if actor is None:
        actor = await authenticate_request(
            platform, request, required=declared.scope != Scope.PUBLIC, then=then
        )
    ctx.actor = actor
    if declared.scope == Scope.PUBLIC:
        return ctx
    assert actor is not None
    if (actor.mfa_pending or actor.must_change_password) and not declared.allow_incomplete:
        raise UnauthenticatedError(
            "finish signing in first: "
            + (
                "set up or enter your second factor"
                if actor.mfa_pending
                else "choose a new password"
            )
        )
    roles: set[Role] = set()
    if actor.is_system_admin:
        roles.add(Role.SYSTEM_ADMIN)
    if declared.scope == Scope.SELF:
        pass
    elif declared.scope == Scope.SYSTEM:
        if not actor.is_system_admin:
            raise PermissionDeniedError("system administrators only")
    elif declared.scope == Scope.ORG:
        org_id = parse_id(request.path_params.get("org_id", ""), what="organization")
        if not actor.is_system_admin and actor.org_id != org_id:
            raise NotFoundError("organization not found")
        if actor.is_org_admin and actor.org_id == org_id:
            roles.add(Role.ORG_ADMIN)
        ctx.org_id = org_id
    elif declared.scope == Scope.PROJECT:
        project_id = parse_id(request.path_params.get("project_id", ""), what="project")
        project_roles, project_org, region = (
            access[0] if access else await roles_in_project(platform.db, actor, project_id)
        )
        if project_org is None:
            raise NotFoundError("project not found")
        if region != platform.settings.region:
            raise MisdirectedError(
                f"this project's data lives in region {region}; this deployment serves "
                f"{platform.settings.region}"
            )
        roles |= project_roles
        if not roles:
            raise NotFoundError("project not found")
        ctx.project_id, ctx.org_id = project_id, project_org
    ctx.roles = frozenset(roles)
    if not can(ctx.roles, declared.permission):
        raise PermissionDeniedError("your role does not allow this")
    return ctx


Authorized = Depends(authorize)


def project_scope(ctx: RequestContext) -> ProjectScope:
    """The domain scope of a project route: the caller's membership role in the database, or
    the platform's own role for administrators (recorded as privileged access)."""
    assert ctx.project_id is not None
    role = ctx.project_role
    if role is not None:
        return ProjectScope(ctx.project_id, ctx.user, role.value)
    return ProjectScope(
        ctx.project_id, ctx.user, "system", privileged_reason="administrator access"
    )
