"""Names of database objects. Project identifiers are derived from the project's UUID only, so
no caller-supplied text ever becomes part of DDL."""

from __future__ import annotations

import uuid

CONTROL_SCHEMA = "lv_control"
OWNER_ROLE = "lv_owner"
RUNTIME_ROLE = "lv_app"
PROJECT_SCHEMA_PREFIX = "p_"
PROJECT_ROLE_PREFIX = "lv_p_"
MIGRATION_LOCK_KEY = 0x4C56_4D49  # "LVMI": serialises `migrate` across servers
# Tables that hold no tenant rows (bookkeeping of the migration tools themselves).
NON_TENANT_TABLES = frozenset({"alembic_version", "lv_schema_meta"})


def project_schema(project_id: uuid.UUID) -> str:
    return PROJECT_SCHEMA_PREFIX + project_id.hex


def project_role(project_id: uuid.UUID) -> str:
    return PROJECT_ROLE_PREFIX + project_id.hex


def project_of_schema(schema: str) -> uuid.UUID | None:
    """The project whose schema this is (``p_<32 hex>``), else None."""
    hex_part = schema.removeprefix(PROJECT_SCHEMA_PREFIX)
    if hex_part == schema or len(hex_part) != 32:
        return None
    try:
        return uuid.UUID(hex=hex_part)
    except ValueError:
        return None
