"""Error types that every layer may raise; adapters map them to HTTP problems or CLI exits.

Messages must never contain secrets or payload content: they are shown to callers and logged.
"""

from __future__ import annotations


class LabelVaultError(Exception):
    """Base of every error LabelVault raises on purpose."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidInputError(LabelVaultError):
    status = 422
    code = "invalid_input"


class NotFoundError(LabelVaultError):
    """The object does not exist, or the caller may not know that it exists."""

    status = 404
    code = "not_found"


class ConflictError(LabelVaultError):
    status = 409
    code = "conflict"


class UnauthenticatedError(LabelVaultError):
    status = 401
    code = "unauthenticated"


class PermissionDeniedError(LabelVaultError):
    """The caller is known to be allowed to see the object but not to do this to it."""

    status = 403
    code = "permission_denied"


class ThrottledError(LabelVaultError):
    status = 429
    code = "throttled"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServiceUnavailableError(LabelVaultError):
    status = 503
    code = "unavailable"


class MisdirectedError(LabelVaultError):
    """The object lives in another region than this deployment serves (data residency)."""

    status = 421
    code = "wrong_region"
