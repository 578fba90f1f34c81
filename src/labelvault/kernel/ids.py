"""Identifiers: random UUIDs (v4) for every object; parsing that never trusts its input."""

from __future__ import annotations

import uuid

from labelvault.kernel.errors import NotFoundError


def new_id() -> uuid.UUID:
    return uuid.uuid4()


def parse_id(value: str | uuid.UUID, *, what: str = "object") -> uuid.UUID:
    """Parse an id from a caller; a malformed id is simply an object that does not exist."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except (ValueError, AttributeError, TypeError):
        raise NotFoundError(f"{what} not found") from None
