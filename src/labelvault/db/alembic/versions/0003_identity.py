"""Identity: sessions, API tokens, MFA, throttling, OIDC providers and identities.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Lookups made before the caller is known (a session cookie, a token, a login) run under the
# explicit platform context; everything else is scoped to the organization or the user.
UPGRADE = r"""
CREATE TABLE lv_control.sessions (
  id uuid PRIMARY KEY,
  secret_hash text NOT NULL UNIQUE,
  user_id uuid NOT NULL REFERENCES lv_control.users (id) ON DELETE CASCADE,
  org_id uuid,
  created_at timestamptz NOT NULL DEFAULT now(),
  last_seen_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  mfa_verified_at timestamptz,
  reauth_at timestamptz,
  source_address text,
  user_agent text,
  ended_at timestamptz,
  ended_reason text
);
CREATE INDEX sessions_user_idx ON lv_control.sessions (user_id) WHERE ended_at IS NULL;

CREATE TABLE lv_control.api_tokens (
  id uuid PRIMARY KEY,
  user_id uuid NOT NULL REFERENCES lv_control.users (id) ON DELETE CASCADE,
  org_id uuid,
  token_hash text NOT NULL UNIQUE,
  prefix text NOT NULL,
  name text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
  project_ids uuid[] NOT NULL,
  max_role text NOT NULL CHECK (max_role IN ('annotator', 'reviewer', 'manager', 'data_owner')),
  expires_at timestamptz NOT NULL,
  last_used_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  revoked_at timestamptz,
  revoked_by uuid
);
CREATE INDEX api_tokens_user_idx ON lv_control.api_tokens (user_id);

CREATE TABLE lv_control.mfa_totp (
  user_id uuid PRIMARY KEY REFERENCES lv_control.users (id) ON DELETE CASCADE,
  org_id uuid,
  secret bytea NOT NULL,
  confirmed_at timestamptz,
  last_step bigint
);

CREATE TABLE lv_control.recovery_codes (
  user_id uuid NOT NULL REFERENCES lv_control.users (id) ON DELETE CASCADE,
  org_id uuid,
  slot smallint NOT NULL,
  code_hash text,
  used_at timestamptz,
  PRIMARY KEY (user_id, slot)
);

CREATE TABLE lv_control.auth_failures (
  key text NOT NULL,
  at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX auth_failures_key_idx ON lv_control.auth_failures (key, at);
CREATE TABLE lv_control.auth_resets (
  key text PRIMARY KEY,
  reset_at timestamptz NOT NULL,
  reset_by uuid
);

CREATE TABLE lv_control.oidc_providers (
  org_id uuid PRIMARY KEY REFERENCES lv_control.organizations (id) ON DELETE CASCADE,
  issuer text NOT NULL,
  client_id text NOT NULL,
  client_secret bytea NOT NULL,
  allowed_algs text[] NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE lv_control.oidc_identities (
  issuer text NOT NULL,
  subject text NOT NULL,
  user_id uuid NOT NULL REFERENCES lv_control.users (id) ON DELETE CASCADE,
  org_id uuid NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (issuer, subject)
);
CREATE TABLE lv_control.oidc_pending (
  state_hash text PRIMARY KEY,
  org_id uuid NOT NULL,
  binding_hash text NOT NULL,
  payload bytea NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE lv_control.sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE lv_control.sessions FORCE ROW LEVEL SECURITY;
ALTER TABLE lv_control.api_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE lv_control.api_tokens FORCE ROW LEVEL SECURITY;
ALTER TABLE lv_control.mfa_totp ENABLE ROW LEVEL SECURITY;
ALTER TABLE lv_control.mfa_totp FORCE ROW LEVEL SECURITY;
ALTER TABLE lv_control.recovery_codes ENABLE ROW LEVEL SECURITY;
ALTER TABLE lv_control.recovery_codes FORCE ROW LEVEL SECURITY;
ALTER TABLE lv_control.auth_failures ENABLE ROW LEVEL SECURITY;
ALTER TABLE lv_control.auth_failures FORCE ROW LEVEL SECURITY;
ALTER TABLE lv_control.auth_resets ENABLE ROW LEVEL SECURITY;
ALTER TABLE lv_control.auth_resets FORCE ROW LEVEL SECURITY;
ALTER TABLE lv_control.oidc_providers ENABLE ROW LEVEL SECURITY;
ALTER TABLE lv_control.oidc_providers FORCE ROW LEVEL SECURITY;
ALTER TABLE lv_control.oidc_identities ENABLE ROW LEVEL SECURITY;
ALTER TABLE lv_control.oidc_identities FORCE ROW LEVEL SECURITY;
ALTER TABLE lv_control.oidc_pending ENABLE ROW LEVEL SECURITY;
ALTER TABLE lv_control.oidc_pending FORCE ROW LEVEL SECURITY;

-- a user's own sessions, tokens and factors; their organization's admins; the platform
CREATE POLICY owner_or_org ON lv_control.sessions FOR ALL TO lv_app
  USING (user_id = (SELECT lv_control.current_user_id())
         OR org_id = (SELECT lv_control.current_org()) OR (SELECT lv_control.is_system()))
  WITH CHECK (user_id = (SELECT lv_control.current_user_id()) OR (SELECT lv_control.is_system()));
CREATE POLICY owner_or_org ON lv_control.api_tokens FOR ALL TO lv_app
  USING (user_id = (SELECT lv_control.current_user_id())
         OR org_id = (SELECT lv_control.current_org()) OR (SELECT lv_control.is_system()))
  WITH CHECK (user_id = (SELECT lv_control.current_user_id()) OR (SELECT lv_control.is_system()));
CREATE POLICY owner ON lv_control.mfa_totp FOR ALL TO lv_app
  USING (user_id = (SELECT lv_control.current_user_id()) OR (SELECT lv_control.is_system()))
  WITH CHECK (user_id = (SELECT lv_control.current_user_id()) OR (SELECT lv_control.is_system()));
CREATE POLICY owner ON lv_control.recovery_codes FOR ALL TO lv_app
  USING (user_id = (SELECT lv_control.current_user_id()) OR (SELECT lv_control.is_system()))
  WITH CHECK (user_id = (SELECT lv_control.current_user_id()) OR (SELECT lv_control.is_system()));
CREATE POLICY platform ON lv_control.auth_failures FOR ALL TO lv_app
  USING ((SELECT lv_control.is_system())) WITH CHECK ((SELECT lv_control.is_system()));
CREATE POLICY platform ON lv_control.auth_resets FOR ALL TO lv_app
  USING ((SELECT lv_control.is_system())) WITH CHECK ((SELECT lv_control.is_system()));
CREATE POLICY tenant ON lv_control.oidc_providers FOR ALL TO lv_app
  USING (org_id = (SELECT lv_control.current_org()) OR (SELECT lv_control.is_system()))
  WITH CHECK (org_id = (SELECT lv_control.current_org()) OR (SELECT lv_control.is_system()));
CREATE POLICY tenant ON lv_control.oidc_identities FOR ALL TO lv_app
  USING (org_id = (SELECT lv_control.current_org()) OR (SELECT lv_control.is_system()))
  WITH CHECK (org_id = (SELECT lv_control.current_org()) OR (SELECT lv_control.is_system()));
CREATE POLICY platform ON lv_control.oidc_pending FOR ALL TO lv_app
  USING ((SELECT lv_control.is_system())) WITH CHECK ((SELECT lv_control.is_system()));

GRANT SELECT, INSERT, UPDATE, DELETE ON lv_control.sessions, lv_control.api_tokens,
  lv_control.mfa_totp, lv_control.recovery_codes, lv_control.auth_failures,
  lv_control.auth_resets, lv_control.oidc_providers, lv_control.oidc_identities,
  lv_control.oidc_pending TO lv_app;
"""


def upgrade() -> None:
    op.get_bind().exec_driver_sql(UPGRADE)


def downgrade() -> None:
    raise NotImplementedError("LabelVault migrations are forward-only")
