"""The role → permission table (DESIGN.md "Roles"): the only place that says who may do what.

Project roles come from a membership in that project; ``org_admin`` and ``system_admin`` from the
user's account. Every API route declares one ``Permission`` and the ``Scope`` it is checked in.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable


class Role(enum.StrEnum):
    ANNOTATOR = "annotator"
    REVIEWER = "reviewer"
    MANAGER = "manager"
    DATA_OWNER = "data_owner"
    ORG_ADMIN = "org_admin"
    SYSTEM_ADMIN = "system_admin"


PROJECT_ROLES = frozenset({Role.ANNOTATOR, Role.REVIEWER, Role.MANAGER, Role.DATA_OWNER})
ORG_ROLES = frozenset({Role.ORG_ADMIN})


class Scope(enum.StrEnum):
    PUBLIC = "public"  # no authentication (health, login, OIDC callback)
    SELF = "self"  # any authenticated user, about themselves
    ORG = "org"  # checked against the organization in the path
    PROJECT = "project"  # checked against the caller's membership in the project in the path
    SYSTEM = "system"  # system administrators only


class Permission(enum.StrEnum):
    PUBLIC = "public"
    SELF_MANAGE = "self.manage"  # own sessions, tokens, MFA, password

    ORG_CREATE = "org.create"
    ORG_READ = "org.read"
    ORG_MANAGE = "org.manage"  # settings, SSO, MFA policy
    USER_MANAGE = "user.manage"
    ACCESS_REVIEW = "access.review"

    PROJECT_CREATE = "project.create"
    PROJECT_READ = "project.read"
    MEMBER_MANAGE = "member.manage"

    ITEM_IMPORT = "item.import"
    PROJECT_CONFIGURE = "project.configure"  # label schema, overlap, review share
    TASK_ASSIGN = "task.assign"
    TASK_WORK = "task.work"  # next task, submit, skip: one task at a time
    REVIEW_WORK = "review.work"
    AGGREGATES_READ = "aggregates.read"
    EXPORT_REQUEST = "export.request"
    EXPORT_APPROVE = "export.approve"
    AUDIT_READ = "audit.read"
    KEYS_MANAGE = "keys.manage"


_P = Permission
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ANNOTATOR: frozenset({_P.PROJECT_READ, _P.TASK_WORK}),
    Role.REVIEWER: frozenset({_P.PROJECT_READ, _P.REVIEW_WORK}),
    Role.MANAGER: frozenset(
        {
            _P.PROJECT_READ,
            _P.PROJECT_CONFIGURE,
            _P.ITEM_IMPORT,
            _P.TASK_ASSIGN,
            _P.AGGREGATES_READ,
            _P.EXPORT_REQUEST,
            _P.EXPORT_APPROVE,
            _P.AUDIT_READ,
        }
    ),
    Role.DATA_OWNER: frozenset(
        {
            _P.PROJECT_READ,
            _P.ITEM_IMPORT,
            _P.AGGREGATES_READ,
            _P.EXPORT_REQUEST,
            _P.EXPORT_APPROVE,
            _P.AUDIT_READ,
        }
    ),
    Role.ORG_ADMIN: frozenset(
        {
            _P.ORG_READ,
            _P.ORG_MANAGE,
            _P.USER_MANAGE,
            _P.ACCESS_REVIEW,
            _P.PROJECT_CREATE,
            _P.PROJECT_READ,
            _P.MEMBER_MANAGE,
            _P.AGGREGATES_READ,
            _P.AUDIT_READ,
        }
    ),
    Role.SYSTEM_ADMIN: frozenset(set(Permission) - {_P.TASK_WORK, _P.REVIEW_WORK}),
}


def permissions_of(roles: Iterable[Role]) -> frozenset[Permission]:
    granted: set[Permission] = {Permission.PUBLIC, Permission.SELF_MANAGE}
    for role in roles:
        granted |= ROLE_PERMISSIONS[role]
    return frozenset(granted)


def can(roles: Iterable[Role], permission: Permission) -> bool:
    return permission in permissions_of(roles)
