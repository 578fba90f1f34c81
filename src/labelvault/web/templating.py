"""Rendering a page: the template environment (autoescape always on) and the response."""

from __future__ import annotations

from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse

from labelvault import identity
from labelvault.web.csp import new_nonce, page_headers
from labelvault.web.static import asset_url

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("labelvault.web", "templates"),
    autoescape=True,  # every template, whatever its name: training data is never markup
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.globals["asset"] = asset_url


def csrf_of(request: Request) -> str:
    """The CSRF token of the request's session (empty when there is no session)."""
    secret = request.scope.get("state", {}).get("session_secret")
    return identity.csrf_token(secret) if secret else ""


def render(
    request: Request,
    template: str,
    *,
    status: int = 200,
    viewer: dict[str, Any] | None = None,
    **values: Any,
) -> HTMLResponse:
    nonce = new_nonce()
    html = _env.get_template(template).render(
        nonce=nonce, csrf=csrf_of(request), viewer=viewer, **values
    )
    return HTMLResponse(html, status_code=status, headers=page_headers(nonce))
