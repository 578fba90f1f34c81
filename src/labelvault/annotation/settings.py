"""A project's labelling settings: the label schema, overlap, distribution, review share."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from labelvault.access.scope import ProjectScope
from labelvault.annotation.label_schema import LabelSchema, parse_label_schema
from labelvault.audit.record import audit_project
from labelvault.db.runtime import RuntimeDatabase, Statement
from labelvault.kernel.errors import ConflictError, InvalidInputError, PermissionDeniedError


@dataclass(frozen=True)
class ProjectSettings:
    label_schema: dict[str, Any] | None
    overlap: int
    auto_distribution: bool
    review_share: float
    export_requires_approval: bool
    lease_seconds: int

    def schema(self) -> LabelSchema:
        if self.label_schema is None:
            raise ConflictError("this project has no label schema yet; a manager sets it first")
        return parse_label_schema(self.label_schema)


_FIELDS = (
    "label_schema",
    "overlap",
    "auto_distribution",
    "review_share",
    "export_requires_approval",
    "lease_seconds",
)


# the read a request sends together with BEGIN and its context (``project_tx_first``)
READ_SETTINGS: Statement = (f"SELECT {', '.join(_FIELDS)} FROM settings", [])


def settings_from_rows(rows: list[dict[str, Any]]) -> ProjectSettings:
    if not rows:
        raise ConflictError("project settings are not readable in this context")
    return ProjectSettings(**rows[0])


async def read_settings(conn: AsyncConnection[Any]) -> ProjectSettings:
    cur = await conn.cursor(row_factory=dict_row).execute(*READ_SETTINGS)
    return settings_from_rows(await cur.fetchall())


async def get_settings(db: RuntimeDatabase, scope: ProjectScope) -> ProjectSettings:
    async with db.project_tx(scope.project_id, scope.context()) as conn:
        return await read_settings(conn)


async def update_settings(
    db: RuntimeDatabase, scope: ProjectScope, changes: dict[str, Any]
) -> ProjectSettings:
    unknown = set(changes) - set(_FIELDS)
    if unknown:
        raise InvalidInputError(f"unknown setting {sorted(unknown)[0]}", field=sorted(unknown)[0])
    values: dict[str, Any] = {}
    for key, value in changes.items():
        if value is None and key != "label_schema":
            continue
        if key == "label_schema":
            values[key] = json.dumps(parse_label_schema(value).to_json())
        elif key == "overlap":
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 10:
                raise InvalidInputError("overlap must be an integer from 1 to 10", field=key)
            values[key] = value
        elif key == "review_share":
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise InvalidInputError("review_share must be between 0 and 1", field=key)
            values[key] = float(value)
        elif key == "lease_seconds":
            if not isinstance(value, int) or isinstance(value, bool) or not 30 <= value <= 86400:
                raise InvalidInputError("lease_seconds must be 30..86400", field=key)
            values[key] = value
        else:
            if not isinstance(value, bool):
                raise InvalidInputError(f"{key} must be true or false", field=key)
            values[key] = value
    async with db.project_tx(scope.project_id, scope.context()) as conn:
        # otherwise one manager could approve their own exports (the database refuses too)
        if (
            values.get("export_requires_approval") is False
            and scope.role != "system"
            and (await read_settings(conn)).export_requires_approval
        ):
            raise PermissionDeniedError(
                "only an organization or system administrator turns off two-person "
                "approval of exports"
            )
        if "label_schema" in values:
            cur = await conn.execute(
                "SELECT count(*) FROM tasks WHERE state <> 'open' AND state <> 'assigned'"
            )
            row = await cur.fetchone()
            if row and row[0]:
                raise ConflictError("the label schema cannot change once annotation has started")
        if values:
            assignments = ", ".join(f"{k} = %s" for k in values)
            cur = await conn.execute(
                f"UPDATE settings SET {assignments}, updated_at = now()",
                list(values.values()),
            )
            if cur.rowcount != 1:
                raise InvalidInputError("only managers change project settings")
        settings = await read_settings(conn)
        await audit_project(
            conn,
            scope.actor,
            "project.settings.update",
            resource_type="project",
            resource_id=scope.project_id,
            project_id=scope.project_id,
            details={
                k: "changed" if k == "label_schema" else str(v) if isinstance(v, float) else v
                for k, v in values.items()
            },
        )
    return settings
