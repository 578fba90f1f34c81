"""Matrix rows for the core routes (health, auth, tokens, organizations, projects).

One dict per route: method, path (placeholders {org_id}, {project_id}, {user_id}, {token_id}),
the declared permission and scope, a JSON body (or a callable making a fresh one) and the status
a permitted caller gets. ``fresh_caller`` rows change the caller's own account or session, so
they run with a throwaway caller of the same kind.
"""

from __future__ import annotations

import uuid
from typing import Any

from tests.support.platform import unique


def _org() -> dict[str, Any]:
    return {"name": unique("org"), "region": "local"}


def _user() -> dict[str, Any]:
    return {"email": f"{unique('new')}@example.test"}


def _project() -> dict[str, Any]:
    return {"name": unique("project")}


ROWS: list[dict[str, Any]] = [
    {
        "method": "GET",
        "path": "/healthz",
        "permission": "public",
        "scope": "public",
        "success": 200,
    },
    {
        "method": "POST",
        "path": "/api/v1/auth/login",
        "permission": "public",
        "scope": "public",
        "json": lambda: {
            "email": f"{unique('nobody')}@example.test",
            "password": "wrong password here",
        },
        "success": 401,
    },
    {
        "method": "POST",
        "path": "/api/v1/auth/mfa/verify",
        "permission": "self.manage",
        "scope": "self",
        "json": {"code": "123456"},
        "success": 422,
    },
    # administrators enrolled at sign-in (409: reset first); others may enrol voluntarily
    {
        "method": "POST",
        "path": "/api/v1/auth/mfa/totp/begin",
        "permission": "self.manage",
        "scope": "self",
        "success": lambda caller: 409 if caller in ("org_admin", "system_admin") else 200,
    },
    {
        "method": "POST",
        "path": "/api/v1/auth/mfa/totp/confirm",
        "permission": "self.manage",
        "scope": "self",
        "json": {"code": "000000"},
        "success": 422,
    },
    {
        "method": "GET",
        "path": "/api/v1/auth/session",
        "permission": "self.manage",
        "scope": "self",
        "success": 200,
    },
    {
        "method": "POST",
        "path": "/api/v1/auth/logout",
        "permission": "self.manage",
        "scope": "self",
        "success": 204,
        "fresh_caller": True,
    },
    {
        "method": "POST",
        "path": "/api/v1/auth/logout-all",
        "permission": "self.manage",
        "scope": "self",
        "success": 204,
        "fresh_caller": True,
    },
    {
        "method": "GET",
        "path": "/api/v1/auth/sessions",
        "permission": "self.manage",
        "scope": "self",
        "success": 200,
    },
    {
        "method": "POST",
        "path": "/api/v1/auth/reauth",
        "permission": "self.manage",
        "scope": "self",
        "json": {"password": "not the password at all"},
        "success": 401,
    },
    {
        "method": "POST",
        "path": "/api/v1/auth/password",
        "permission": "self.manage",
        "scope": "self",
        "json": {
            "current_password": "wrong current password",
            "new_password": "a brand new passphrase 99",
        },
        "success": 401,
    },
    {
        "method": "GET",
        "path": "/api/v1/tokens",
        "permission": "self.manage",
        "scope": "self",
        "success": 200,
    },
    {
        "method": "POST",
        "path": "/api/v1/tokens",
        "permission": "self.manage",
        "scope": "self",
        "json": lambda: {"name": "t", "project_ids": [str(uuid.uuid4())], "max_role": "annotator"},
        "success": 404,
    },
    {
        "method": "DELETE",
        "path": "/api/v1/tokens/{token_id}",
        "permission": "self.manage",
        "scope": "self",
        "success": 404,
    },
    {
        "method": "GET",
        "path": "/api/v1/orgs",
        "permission": "org.create",
        "scope": "system",
        "success": 200,
    },
    {
        "method": "POST",
        "path": "/api/v1/orgs",
        "permission": "org.create",
        "scope": "system",
        "json": _org,
        "success": 201,
    },
    {
        "method": "GET",
        "path": "/api/v1/orgs/{org_id}",
        "permission": "org.read",
        "scope": "org",
        "success": 200,
    },
    {
        "method": "GET",
        "path": "/api/v1/orgs/{org_id}/users",
        "permission": "user.manage",
        "scope": "org",
        "success": 200,
    },
    {
        "method": "POST",
        "path": "/api/v1/orgs/{org_id}/users",
        "permission": "user.manage",
        "scope": "org",
        "json": _user,
        "success": 201,
    },
    {
        "method": "POST",
        "path": "/api/v1/orgs/{org_id}/users/{user_id}/disable",
        "permission": "user.manage",
        "scope": "org",
        "success": 200,
    },
    {
        "method": "POST",
        "path": "/api/v1/orgs/{org_id}/users/{user_id}/enable",
        "permission": "user.manage",
        "scope": "org",
        "success": 200,
    },
    {
        "method": "POST",
        "path": "/api/v1/orgs/{org_id}/users/{user_id}/reset-mfa",
        "permission": "user.manage",
        "scope": "org",
        "success": 204,
    },
    {
        "method": "POST",
        "path": "/api/v1/orgs/{org_id}/users/{user_id}/unlock",
        "permission": "user.manage",
        "scope": "org",
        "success": 204,
    },
    {
        "method": "GET",
        "path": "/api/v1/orgs/{org_id}/access-review",
        "permission": "access.review",
        "scope": "org",
        "success": 200,
    },
    {
        "method": "GET",
        "path": "/api/v1/orgs/{org_id}/projects",
        "permission": "org.read",
        "scope": "org",
        "success": 200,
    },
    {
        "method": "POST",
        "path": "/api/v1/orgs/{org_id}/projects",
        "permission": "project.create",
        "scope": "org",
        "json": _project,
        "success": 201,
    },
    {
        "method": "GET",
        "path": "/api/v1/projects/{project_id}",
        "permission": "project.read",
        "scope": "project",
        "success": 200,
    },
    {
        "method": "GET",
        "path": "/api/v1/projects/{project_id}/members",
        "permission": "member.manage",
        "scope": "project",
        "success": 200,
    },
    {
        "method": "PUT",
        "path": "/api/v1/projects/{project_id}/members/{user_id}",
        "permission": "member.manage",
        "scope": "project",
        "json": {"role": "annotator"},
        "success": 200,
    },
    {
        "method": "DELETE",
        "path": "/api/v1/projects/{project_id}/members/{user_id}",
        "permission": "member.manage",
        "scope": "project",
        "success": 404,
    },
]
