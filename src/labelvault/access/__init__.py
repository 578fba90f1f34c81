"""Roles, the one role → permission table every check reads, and ``can()``."""

from labelvault.access.permissions import (
    ORG_ROLES,
    PROJECT_ROLES,
    ROLE_PERMISSIONS,
    Permission,
    Role,
    Scope,
    can,
    permissions_of,
)
from labelvault.access.scope import ProjectScope

__all__ = [
    "ORG_ROLES",
    "PROJECT_ROLES",
    "ROLE_PERMISSIONS",
    "Permission",
    "ProjectScope",
    "Role",
    "Scope",
    "can",
    "permissions_of",
]
