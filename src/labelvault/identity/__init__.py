"""Identity: accounts, sessions, second factors, API tokens, memberships and SSO.

The pure building blocks (hashing, TOTP, token formats, OIDC validation) are in
``labelvault.auth``; this package stores and enforces them.
"""

from labelvault.identity.login import (
    change_password,
    login_with_password,
    reauthenticate,
    verify_second_factor,
)
from labelvault.identity.memberships import (
    list_memberships,
    project_member_ids,
    remove_membership,
    roles_in_project,
    set_membership,
)
from labelvault.identity.mfa import begin_totp, confirm_totp, reset_mfa
from labelvault.identity.models import Membership, SessionInfo, TokenInfo, User
from labelvault.identity.sessions import (
    NewSession,
    SessionPolicy,
    check_csrf,
    csrf_token,
    end_all_sessions,
    end_session,
    list_sessions,
    resolve_session,
)
from labelvault.identity.tokens import create_token, list_tokens, resolve_token, revoke_token
from labelvault.identity.users import (
    access_review,
    create_user,
    find_user_by_email,
    get_user,
    lift_sign_in_lock,
    list_users,
    one_time_password,
    set_user_status,
)

__all__ = [
    "Membership",
    "NewSession",
    "SessionInfo",
    "SessionPolicy",
    "TokenInfo",
    "User",
    "access_review",
    "begin_totp",
    "change_password",
    "check_csrf",
    "confirm_totp",
    "create_token",
    "create_user",
    "csrf_token",
    "end_all_sessions",
    "end_session",
    "find_user_by_email",
    "get_user",
    "lift_sign_in_lock",
    "list_memberships",
    "list_sessions",
    "list_tokens",
    "list_users",
    "login_with_password",
    "one_time_password",
    "project_member_ids",
    "reauthenticate",
    "remove_membership",
    "reset_mfa",
    "resolve_session",
    "resolve_token",
    "revoke_token",
    "roles_in_project",
    "set_membership",
    "set_user_status",
    "verify_second_factor",
]
