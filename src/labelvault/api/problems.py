"""Errors as RFC 9457 ``application/problem+json``; never a stack trace, secret or payload."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from labelvault.crypto import DataDestroyedError, DecryptionError
from labelvault.kernel.errors import LabelVaultError, ThrottledError
from labelvault.logs import get_logger

PROBLEM_JSON = "application/problem+json"
log = get_logger(__name__)

_TITLES = {
    400: "Bad request",
    401: "Authentication required",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    410: "Gone",
    413: "Payload too large",
    415: "Unsupported media type",
    421: "Misdirected request",
    422: "Invalid input",
    429: "Too many requests",
    500: "Internal error",
    503: "Service unavailable",
}


def problem(
    status: int,
    detail: str,
    *,
    code: str | None = None,
    field: str | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"https://labelvault.dev/problems/{code or status}",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if code:
        body["code"] = code
    if field:
        body["field"] = field
    if extra:
        body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(LabelVaultError)
    async def _domain(request: Request, exc: LabelVaultError) -> JSONResponse:
        headers = None
        if isinstance(exc, ThrottledError):
            headers = {"Retry-After": str(exc.retry_after)}
        if exc.status >= 500:
            log.error("request failed", code=exc.code, path=request.url.path)
        return problem(exc.status, exc.message, code=exc.code, field=exc.field, headers=headers)

    @app.exception_handler(DataDestroyedError)
    async def _destroyed(request: Request, exc: DataDestroyedError) -> JSONResponse:
        return problem(410, "data destroyed: this project's keys were shredded", code="destroyed")

    @app.exception_handler(DecryptionError)
    async def _decrypt(request: Request, exc: DecryptionError) -> JSONResponse:
        log.error("decryption failed", path=request.url.path)
        return problem(500, "stored data failed authentication", code="integrity_error")

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        field = ".".join(loc) or None
        msg = str(first.get("msg", "invalid input"))
        return problem(
            422,
            f"{field}: {msg}" if field else msg,
            code="invalid_input",
            field=field,
            extra={
                "errors": [
                    {
                        "field": ".".join(str(p) for p in e.get("loc", ())),
                        "message": str(e.get("msg", "")),
                    }
                    for e in errors[:20]
                ]
            },
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else _TITLES.get(exc.status_code, "")
        return problem(exc.status_code, detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", error_type=type(exc).__name__, path=request.url.path)
        return problem(500, "internal error", code="internal_error")
