"""Organizations and projects as the rest of the platform sees them."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Organization:
    id: uuid.UUID
    name: str
    region: str
    status: str
    require_mfa: bool
    require_sso: bool
    created_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Project:
    id: uuid.UUID
    org_id: uuid.UUID
    name: str
    region: str
    status: str
    created_at: dt.datetime
