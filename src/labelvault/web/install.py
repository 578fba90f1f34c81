"""Mounting the pages on the app, and errors on browser navigations shown as pages."""

from __future__ import annotations

import inspect
from urllib.parse import quote

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from labelvault.kernel.errors import LabelVaultError, UnauthenticatedError
from labelvault.web.csp import new_nonce, page_headers
from labelvault.web.pages import router
from labelvault.web.templating import render


def is_page_navigation(request: Request) -> bool:
    """A browser asking for a page (not the API, not a script's fetch)."""
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get(
        "accept", ""
    )


def login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    headers = page_headers(new_nonce())
    return RedirectResponse(f"/login?next={quote(target, safe='/')}", 303, headers=headers)


def install_web(app: FastAPI) -> None:
    """Add the page routes (declared with ``@access`` like every route) and the error pages.

    Pages keep their real permission; a browser that is not signed in (or has not finished
    signing in) gets a 303 to ``/login?next=…`` instead of the API's 401 problem document, and
    other refusals render an error page with the same status. API clients (no ``text/html`` in
    ``Accept``) get problem+json as everywhere else.
    """
    app.include_router(router)
    problem_handler = app.exception_handlers[LabelVaultError]

    async def page_errors(request: Request, exc: Exception) -> Response:
        if not isinstance(exc, LabelVaultError) or not is_page_navigation(request):
            response = problem_handler(request, exc)
            return await response if inspect.isawaitable(response) else response
        if isinstance(exc, UnauthenticatedError):
            return login_redirect(request)
        return render(
            request, "error.html", status=exc.status, status_code=exc.status, message=exc.message
        )

    app.add_exception_handler(LabelVaultError, page_errors)
