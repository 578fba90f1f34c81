"""Request and response bodies of the JSON API (separate from storage models)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ProjectRole = Literal["annotator", "reviewer", "manager", "data_owner"]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=4096)


class LoginIn(StrictModel):
    email: str = Field(max_length=254)
    password: str = Field(max_length=1024)


class LoginOut(BaseModel):
    mfa_required: bool
    mfa_enrollment_required: bool
    password_change_required: bool
    csrf_token: str


class CodeIn(StrictModel):
    code: str = Field(max_length=64)


class PasswordIn(StrictModel):
    password: str = Field(max_length=1024)


class PasswordChangeIn(StrictModel):
    current_password: str = Field(max_length=1024)
    new_password: str = Field(max_length=1024)


class TotpBeginOut(BaseModel):
    secret: str
    otpauth_uri: str


class RecoveryCodesOut(BaseModel):
    recovery_codes: list[str]


class UserOut(BaseModel):
    id: uuid.UUID
    org_id: uuid.UUID | None
    email: str
    display_name: str
    status: str
    is_system_admin: bool
    is_org_admin: bool
    created_at: dt.datetime


class SessionStateOut(BaseModel):
    user: UserOut
    mfa_pending: bool
    mfa_enrollment_required: bool
    password_change_required: bool
    csrf_token: str | None


class SessionOut(BaseModel):
    id: uuid.UUID
    created_at: dt.datetime
    last_seen_at: dt.datetime
    expires_at: dt.datetime
    source_address: str | None
    user_agent: str | None
    current: bool


class TokenIn(StrictModel):
    name: str = Field(min_length=1, max_length=100)
    project_ids: list[uuid.UUID] = Field(min_length=1, max_length=100)
    max_role: ProjectRole
    expires_in_days: int = Field(default=90, ge=1, le=365)


class TokenOut(BaseModel):
    id: uuid.UUID
    name: str
    prefix: str
    project_ids: list[uuid.UUID]
    max_role: str
    expires_at: dt.datetime
    last_used_at: dt.datetime | None
    created_at: dt.datetime
    revoked_at: dt.datetime | None


class CreatedTokenOut(TokenOut):
    token: str = Field(description="shown once; store it in a secret manager")


class OrgIn(StrictModel):
    name: str = Field(min_length=1, max_length=100)
    region: str = Field(default="local", max_length=32)


class OrgOut(BaseModel):
    id: uuid.UUID
    name: str
    region: str
    status: str
    require_mfa: bool
    require_sso: bool
    created_at: dt.datetime


class UserIn(StrictModel):
    email: str = Field(max_length=254)
    display_name: str = Field(default="", max_length=200)
    is_org_admin: bool = False


class CreatedUserOut(UserOut):
    one_time_password: str = Field(description="shown once; must be changed at first sign-in")


class ProjectIn(StrictModel):
    name: str = Field(min_length=1, max_length=100)
    region: str | None = Field(default=None, max_length=32)


class ProjectOut(BaseModel):
    id: uuid.UUID
    org_id: uuid.UUID
    name: str
    region: str
    status: str
    created_at: dt.datetime


class MembershipIn(StrictModel):
    role: ProjectRole


class MembershipOut(BaseModel):
    project_id: uuid.UUID
    user_id: uuid.UUID
    role: str
    created_at: dt.datetime


class AccessReviewRow(BaseModel):
    user_id: uuid.UUID
    email: str
    status: str
    is_org_admin: bool
    project_id: uuid.UUID | None
    project_name: str | None
    role: str | None
    last_session: dt.datetime | None
    last_token_use: dt.datetime | None
    sso_linked: bool
    mfa: bool


# -- single sign-on (OpenID Connect) -----------------------------------------------------------


class SsoSettingsIn(StrictModel):
    issuer: str = Field(min_length=1, max_length=2048)
    client_id: str = Field(min_length=1, max_length=255)
    client_secret: str | None = Field(
        default=None,
        min_length=1,
        max_length=1024,
        description="write-only; omit to keep the stored secret (same issuer and client only)",
    )
    allowed_algs: list[str] = Field(
        default_factory=lambda: ["RS256", "ES256", "PS256"], min_length=1, max_length=9
    )
    require_sso: bool = False
    jit: bool = False
    default_role: ProjectRole | None = None
    default_project_id: uuid.UUID | None = None


class SsoSettingsOut(BaseModel):
    org_id: uuid.UUID
    issuer: str
    client_id: str
    has_client_secret: bool
    allowed_algs: list[str]
    require_sso: bool
    jit: bool
    default_role: str | None
    default_project_id: uuid.UUID | None
    updated_at: dt.datetime
    redirect_uri: str = Field(description="register this redirect URI with the provider")


class SsoIdentityLinkIn(StrictModel):
    user_id: uuid.UUID
    subject: str = Field(min_length=1, max_length=255)
