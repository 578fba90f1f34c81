"""The tenant context a transaction runs under, derived from the Actor in one place.

Set per transaction with bound parameters (``set_config(name, value, true)``), never per session
and never by string formatting, so it ends with the transaction and a pooled connection is handed
back clean.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from labelvault.kernel.actor import Actor

PROJECT_ROLES = frozenset({"annotator", "reviewer", "manager", "data_owner"})
# "system": the platform's own work (jobs, operator CLI, privileged and audited access).
CONTEXT_ROLES = PROJECT_ROLES | {"system"}


@dataclass(frozen=True, slots=True)
class ControlContext:
    user_id: uuid.UUID | None
    org_id: uuid.UUID | None
    system: bool

    @classmethod
    def for_actor(cls, actor: Actor) -> ControlContext:
        return cls(actor.user_id, actor.org_id, actor.is_system or actor.is_system_admin)

    @classmethod
    def system_context(cls) -> ControlContext:
        return cls(None, None, True)

    def params(self) -> list[str]:
        return [
            str(self.user_id) if self.user_id else "",
            str(self.org_id) if self.org_id else "",
            "on" if self.system else "",
        ]


@dataclass(frozen=True, slots=True)
class ProjectContext:
    user_id: uuid.UUID | None
    role: str

    def __post_init__(self) -> None:
        if self.role not in CONTEXT_ROLES:
            raise ValueError(f"unknown project context role {self.role!r}")

    def params(self) -> list[str]:
        return [str(self.user_id) if self.user_id else "", self.role]


SET_CONTROL_CONTEXT = (
    "SELECT set_config('lv.user_id', %s, true), set_config('lv.org_id', %s, true), "
    "set_config('lv.system', %s, true)"
)
SET_PROJECT_CONTEXT = "SELECT set_config('lv.user_id', %s, true), set_config('lv.role', %s, true)"
