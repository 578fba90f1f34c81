"""Single sign-on: an organization's default project for just-in-time provisioned users.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# The default project must belong to the same organization: the foreign key is on
# (organization, project), which lv_control.projects declares unique. Deleting the project only
# clears the default (PostgreSQL 15+ column list).
UPGRADE = r"""
ALTER TABLE lv_control.organizations ADD COLUMN sso_default_project uuid;
ALTER TABLE lv_control.organizations
  ADD CONSTRAINT organizations_sso_default_project_fkey
  FOREIGN KEY (id, sso_default_project) REFERENCES lv_control.projects (org_id, id)
  ON DELETE SET NULL (sso_default_project);
ALTER TABLE lv_control.organizations
  ADD CONSTRAINT organizations_sso_default_role_check
  CHECK (sso_default_role IS NULL
         OR sso_default_role IN ('annotator', 'reviewer', 'manager', 'data_owner'));
CREATE INDEX oidc_pending_created_idx ON lv_control.oidc_pending (created_at);
CREATE INDEX oidc_identities_user_idx ON lv_control.oidc_identities (user_id);
"""


def upgrade() -> None:
    op.get_bind().exec_driver_sql(UPGRADE)


def downgrade() -> None:
    raise NotImplementedError("LabelVault migrations are forward-only")
