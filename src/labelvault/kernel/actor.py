"""The acting principal of a request, job or command."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field


class ActorKind(enum.StrEnum):
    USER = "user"
    TOKEN = "token"  # noqa: S105 - a user acting through one of their API tokens
    SYSTEM = "system"  # the platform itself (migrations, jobs, CLI run by an operator)


@dataclass(frozen=True, slots=True)
class Actor:
    kind: ActorKind
    user_id: uuid.UUID | None = None
    org_id: uuid.UUID | None = None
    is_system_admin: bool = False
    is_org_admin: bool = False
    session_id: str | None = None  # an opaque reference (never the session secret)
    token_id: uuid.UUID | None = None
    source_address: str | None = None
    user_agent: str | None = None
    request_id: str | None = None
    label: str = field(default="")
    # session state: a second factor still to pass (or to enrol), a password to replace
    mfa_pending: bool = False
    mfa_enrollment_required: bool = False
    must_change_password: bool = False
    recently_authenticated: bool = False
    # an API token's limits: the projects it names and the highest role it may use
    token_project_ids: frozenset[uuid.UUID] | None = None
    token_max_role: str | None = None

    @classmethod
    def system(cls, label: str = "system") -> Actor:
        return cls(kind=ActorKind.SYSTEM, is_system_admin=True, label=label)

    @property
    def is_system(self) -> bool:
        return self.kind is ActorKind.SYSTEM
