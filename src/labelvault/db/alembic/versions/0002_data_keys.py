"""Wrapped data keys per scope (a project, or the control plane), versioned.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE TABLE lv_control.data_keys (
  scope text NOT NULL CHECK (scope = 'control' OR scope ~ '^[0-9a-f-]{36}$'),
  version integer NOT NULL CHECK (version >= 1),
  wrapped bytea NOT NULL,
  kek_id text NOT NULL,
  state text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'retired', 'destroyed')),
  encryptions bigint NOT NULL DEFAULT 0,
  created_at timestamptz NOT NULL DEFAULT now(),
  retired_at timestamptz,
  destroyed_at timestamptz,
  CHECK ((state = 'destroyed') = (length(wrapped) = 0)),
  PRIMARY KEY (scope, version)
);
-- background re-encryption after a data-key rotation, resumable after a crash
CREATE TABLE lv_control.key_rotations (
  scope text NOT NULL,
  to_version integer NOT NULL,
  state text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'done')),
  progress jsonb NOT NULL DEFAULT '{}'::jsonb,
  started_at timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz,
  PRIMARY KEY (scope, to_version)
);
ALTER TABLE lv_control.data_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE lv_control.data_keys FORCE ROW LEVEL SECURITY;
ALTER TABLE lv_control.key_rotations ENABLE ROW LEVEL SECURITY;
ALTER TABLE lv_control.key_rotations FORCE ROW LEVEL SECURITY;
-- only the platform itself handles keys
CREATE POLICY platform ON lv_control.data_keys FOR ALL TO lv_app
  USING ((SELECT lv_control.is_system())) WITH CHECK ((SELECT lv_control.is_system()));
CREATE POLICY platform ON lv_control.key_rotations FOR ALL TO lv_app
  USING ((SELECT lv_control.is_system())) WITH CHECK ((SELECT lv_control.is_system()));
GRANT SELECT, INSERT, UPDATE, DELETE ON lv_control.data_keys, lv_control.key_rotations TO lv_app;
"""


def upgrade() -> None:
    op.get_bind().exec_driver_sql(UPGRADE)


def downgrade() -> None:
    raise NotImplementedError("LabelVault migrations are forward-only")
