"""Exceptions of the SDK: one per problem+json status family, never carrying the token.

Every HTTP error the server returns is an RFC 9457 problem (``detail``, ``code``, optional
``field``); it becomes a ``LabelVaultClientError`` subclass chosen by status. Transport failures
(refused connection, TLS failure, timeout) become ``TransportFailed``. Messages are built only
from the problem fields and the request's method and path: never headers, never the token.
"""

from __future__ import annotations

from typing import Any

import httpx


class LabelVaultClientError(Exception):
    """An error answer of the LabelVault API (or a failure to reach it)."""

    def __init__(
        self,
        status: int,
        code: str | None,
        detail: str,
        field: str | None = None,
        *,
        body: dict[str, Any] | None = None,
        request_id: str | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.detail = detail
        self.field = field
        self.body: dict[str, Any] = body or {}
        self.request_id = request_id
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = f" (field {self.field})" if self.field else ""
        code = f" {self.code}" if self.code else ""
        return f"{self.status}{code}: {self.detail}{where}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, "
            f"detail={self.detail!r}, field={self.field!r})"
        )

    @property
    def report(self) -> dict[str, Any] | None:
        """The import report of a rejected import (422 ``bad_rows``), if any."""
        value = self.body.get("report")
        return value if isinstance(value, dict) else None


class TransportFailed(LabelVaultClientError):
    """The server could not be reached, the TLS handshake failed or the request timed out."""

    def __init__(self, detail: str) -> None:
        super().__init__(0, "transport", detail)


class BadRequest(LabelVaultClientError):
    """400."""


class Unauthorized(LabelVaultClientError):
    """401: no valid token (missing, revoked, expired)."""


class Forbidden(LabelVaultClientError):
    """403: the token's role may not do this."""


class NotFound(LabelVaultClientError):
    """404: no such object, or not one the caller may know exists."""


class Conflict(LabelVaultClientError):
    """409: the object's state forbids it (already decided, lease expired...)."""


class Gone(LabelVaultClientError):
    """410: the data was destroyed or the link expired."""


class PayloadTooLarge(LabelVaultClientError):
    """413: the upload exceeds the server's limit."""


class Invalid(LabelVaultClientError):
    """422: invalid input; ``field`` names the offending field when known."""


class Throttled(LabelVaultClientError):
    """429: too many requests; retry after ``retry_after`` seconds."""

    def __init__(self, *args: Any, retry_after: int | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(*args, **kwargs)


class ServerError(LabelVaultClientError):
    """5xx: the server failed (or is unavailable)."""


_BY_STATUS: dict[int, type[LabelVaultClientError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    413: PayloadTooLarge,
    422: Invalid,
    429: Throttled,
}


def error_from_response(response: httpx.Response) -> LabelVaultClientError:
    """The exception for an error response whose body has been read."""
    status = response.status_code
    body: dict[str, Any] = {}
    try:
        parsed = response.json()
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        body = parsed
    detail = body.get("detail")
    if not isinstance(detail, str) or not detail:
        detail = response.reason_phrase or "error"
    code = body.get("code") if isinstance(body.get("code"), str) else None
    field = body.get("field") if isinstance(body.get("field"), str) else None
    request_id = response.headers.get("x-request-id")
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else LabelVaultClientError)
    if cls is Throttled:
        retry = response.headers.get("retry-after", "")
        return Throttled(
            status,
            code,
            detail,
            field,
            body=body,
            request_id=request_id,
            retry_after=int(retry) if retry.isdigit() else None,
        )
    return cls(status, code, detail, field, body=body, request_id=request_id)


def transport_error(exc: httpx.TransportError, method: str, path: str) -> TransportFailed:
    kind = type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return TransportFailed(f"{method} {path}: timed out ({kind})")
    if isinstance(exc, httpx.ConnectError):
        reason = str(exc).split("\n")[0][:200]
        return TransportFailed(f"{method} {path}: cannot connect ({reason or kind})")
    return TransportFailed(f"{method} {path}: {kind}")
