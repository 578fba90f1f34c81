"""Authorization matrix rows for the single sign-on routes (``labelvault.api.routes.sso``).

Each row: method, path (``{org_id}``/``{user_id}`` are placeholders), the declared permission and
scope, a valid JSON body or query where needed, and ``success``, the status of an allowed call.
Extra keys, for a matrix test that wants them:

* ``setup``: ``"sso"`` when the organization needs a configured provider first (the PUT row
  configures one), ``"sso_login"`` when a started login (a pending state and the browser-binding
  cookie) is needed.
* ``without_setup``: the status of an allowed call when that setup is missing.
* ``recent_auth``: the call needs a session signed in (or re-authenticated) in the last 30 min.
"""

from __future__ import annotations

import uuid
from typing import Any

_SETTINGS_BODY: dict[str, Any] = {
    "issuer": "https://idp.example.test",
    "client_id": "labelvault-matrix-client",
    "client_secret": "matrix-client-secret-value",
    "allowed_algs": ["RS256"],
    "require_sso": False,
    "jit": False,
}

ROWS: list[dict[str, Any]] = [
    {
        "method": "PUT",
        "path": "/api/v1/orgs/{org_id}/sso",
        "permission": "org.manage",
        "scope": "org",
        "json": _SETTINGS_BODY,
        "success": 200,
        "recent_auth": True,
    },
    {
        "method": "GET",
        "path": "/api/v1/orgs/{org_id}/sso",
        "permission": "org.manage",
        "scope": "org",
        "success": 200,
        "setup": "sso",
        "without_setup": 404,
    },
    {
        "method": "POST",
        "path": "/api/v1/orgs/{org_id}/sso/identities",
        "permission": "org.manage",
        "scope": "org",
        "json": lambda: {"user_id": "{user_id}", "subject": f"matrix-{uuid.uuid4().hex}"},
        "success": 204,
        "setup": "sso",
        "without_setup": 404,
        "recent_auth": True,
    },
    {
        "method": "DELETE",
        "path": "/api/v1/orgs/{org_id}/sso",
        "permission": "org.manage",
        "scope": "org",
        "success": 204,
        "setup": "sso",
        "without_setup": 404,
        "recent_auth": True,
    },
    {
        "method": "GET",
        "path": "/api/v1/auth/sso/{org_id}/start",
        "permission": "public",
        "scope": "public",
        "params": {"next": "/"},
        "success": 302,
        "setup": "sso",
        # no provider configured, or the provider cannot be reached or misbehaves: 404 / 401
        "without_setup": 404,
    },
    {
        "method": "GET",
        "path": "/api/v1/auth/sso/callback",
        "permission": "public",
        "scope": "public",
        "params": {"state": "matrix-state", "code": "matrix-code"},
        "success": 303,
        "setup": "sso_login",
        # an unknown state (or a missing binding cookie): 401 problem+json, never a session
        "without_setup": 401,
    },
]
