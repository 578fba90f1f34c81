"""The request path's fast lane: an API token and its roles in one project, in one statement.

Most API requests carry a token that is valid, was used within the last minute and names the
project in the path. For those, ``lv_control.token_access`` runs the token lookup and the
membership lookup (the same queries, under the same row-level security and context as
``resolve_token`` and ``roles_in_project``) as a single statement. Anything else, an unknown,
revoked or expired token, a user or organization no longer active, a use due to be recorded,
returns ``None`` and the caller takes the full path, which writes its audit event.
"""

from __future__ import annotations

import uuid

from psycopg.rows import dict_row

from labelvault.auth import parse_api_token
from labelvault.db.runtime import RuntimeDatabase
from labelvault.identity.memberships import NO_ACCESS, ProjectAccess, project_access_of
from labelvault.identity.tokens import token_actor, token_is_due_a_touch, token_is_refused
from labelvault.kernel.actor import Actor

_ACCESS = "SELECT * FROM lv_control.token_access(%s, %s)"


async def token_project_access(
    db: RuntimeDatabase,
    token: str,
    project_id: uuid.UUID,
    *,
    source_address: str | None = None,
    user_agent: str | None = None,
    request_id: str | None = None,
) -> tuple[Actor, ProjectAccess] | None:
    """The token's actor and their roles in ``project_id``, or None: take the full path."""
    token_hash = parse_api_token(token)
    if token_hash is None:
        return None
    rows = await db.control_call(_ACCESS, [token_hash, project_id], row_factory=dict_row)
    if not rows:
        return None
    row = rows[0]
    if token_is_refused(row) or token_is_due_a_touch(row):
        return None
    actor = token_actor(
        row, source_address=source_address, user_agent=user_agent, request_id=request_id
    )
    if row["project_org"] is None:  # not a project of this token, or not one they can see
        return actor, NO_ACCESS
    return actor, project_access_of(
        actor, row["project_org"], row["project_region"], row["member_role"]
    )
