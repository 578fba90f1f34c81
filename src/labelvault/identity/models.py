"""Users, sessions and tokens as the rest of the platform sees them (no secrets inside)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class User:
    id: uuid.UUID
    org_id: uuid.UUID | None
    email: str
    display_name: str
    status: str
    is_system_admin: bool
    is_org_admin: bool
    password_must_change: bool
    created_at: dt.datetime


@dataclass(frozen=True, slots=True)
class SessionInfo:
    id: uuid.UUID
    user_id: uuid.UUID
    created_at: dt.datetime
    last_seen_at: dt.datetime
    expires_at: dt.datetime
    source_address: str | None
    user_agent: str | None
    current: bool = False


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: uuid.UUID
    user_id: uuid.UUID
    name: str
    prefix: str
    project_ids: list[uuid.UUID]
    max_role: str
    expires_at: dt.datetime
    last_used_at: dt.datetime | None
    created_at: dt.datetime
    revoked_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class Membership:
    project_id: uuid.UUID
    user_id: uuid.UUID
    org_id: uuid.UUID
    role: str
    created_at: dt.datetime
