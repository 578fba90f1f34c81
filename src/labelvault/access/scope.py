"""The project scope a domain operation runs in: who acts, in which project, as which role.

The database role of the transaction comes from here and nowhere else: it is the caller's live
membership role (or ``system`` for the platform's own work and for administrators, whose raw
access is then recorded as privileged, with a reason).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from labelvault.db.context import ProjectContext
from labelvault.kernel.actor import Actor


@dataclass(frozen=True)
class ProjectScope:
    project_id: uuid.UUID
    actor: Actor
    role: str  # annotator | reviewer | manager | data_owner | system
    privileged_reason: str | None = None

    def context(self, role: str | None = None) -> ProjectContext:
        return ProjectContext(self.actor.user_id, role or self.role)

    @property
    def user_id(self) -> uuid.UUID | None:
        return self.actor.user_id
