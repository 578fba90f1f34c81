"""Control plane: organizations, users, projects, project credentials, memberships, with RLS.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Every tenant table: RLS enabled and forced; policies for lv_app with USING and WITH CHECK that
# fail closed when the per-transaction context is unset.
UPGRADE = r"""
CREATE FUNCTION lv_control.current_org() RETURNS uuid LANGUAGE sql STABLE PARALLEL SAFE
  AS $f$ SELECT NULLIF(current_setting('lv.org_id', true), '')::uuid $f$;
CREATE FUNCTION lv_control.current_user_id() RETURNS uuid LANGUAGE sql STABLE PARALLEL SAFE
  AS $f$ SELECT NULLIF(current_setting('lv.user_id', true), '')::uuid $f$;
CREATE FUNCTION lv_control.is_system() RETURNS boolean LANGUAGE sql STABLE PARALLEL SAFE
  AS $f$ SELECT coalesce(NULLIF(current_setting('lv.system', true), '') = 'on', false) $f$;

CREATE TABLE lv_control.organizations (
  id uuid PRIMARY KEY,
  name text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
  region text NOT NULL CHECK (region ~ '^[a-z][a-z0-9-]{0,31}$'),
  status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
  require_mfa boolean NOT NULL DEFAULT false,
  require_sso boolean NOT NULL DEFAULT false,
  sso_default_role text,
  sso_jit boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX organizations_name_key ON lv_control.organizations (lower(name));

CREATE TABLE lv_control.users (
  id uuid PRIMARY KEY,
  org_id uuid REFERENCES lv_control.organizations (id),
  email text NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
  display_name text NOT NULL DEFAULT '' CHECK (length(display_name) <= 200),
  password_hash text,
  password_changed_at timestamptz,
  password_must_change boolean NOT NULL DEFAULT false,
  status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
  is_system_admin boolean NOT NULL DEFAULT false,
  is_org_admin boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now(),
  CHECK (is_system_admin OR org_id IS NOT NULL),
  UNIQUE (org_id, id)
);
CREATE UNIQUE INDEX users_email_key ON lv_control.users (lower(email));
CREATE INDEX users_org_idx ON lv_control.users (org_id);

CREATE TABLE lv_control.projects (
  id uuid PRIMARY KEY,
  org_id uuid NOT NULL REFERENCES lv_control.organizations (id),
  name text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
  region text NOT NULL CHECK (region ~ '^[a-z][a-z0-9-]{0,31}$'),
  status text NOT NULL DEFAULT 'provisioning'
    CHECK (status IN ('provisioning', 'active', 'deleting', 'deleted')),
  created_by uuid,
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (org_id, id)
);
CREATE UNIQUE INDEX projects_org_name_key ON lv_control.projects (org_id, lower(name));

-- the project role's password, encrypted; readable by the runtime role only
CREATE TABLE lv_control.project_credentials (
  project_id uuid PRIMARY KEY,
  org_id uuid NOT NULL,
  secret bytea NOT NULL,
  rotated_at timestamptz NOT NULL DEFAULT now(),
  FOREIGN KEY (org_id, project_id) REFERENCES lv_control.projects (org_id, id) ON DELETE CASCADE
);

CREATE TABLE lv_control.memberships (
  org_id uuid NOT NULL,
  project_id uuid NOT NULL,
  user_id uuid NOT NULL,
  role text NOT NULL CHECK (role IN ('annotator', 'reviewer', 'manager', 'data_owner')),
  created_by uuid,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (project_id, user_id),
  FOREIGN KEY (org_id, project_id) REFERENCES lv_control.projects (org_id, id) ON DELETE CASCADE,
  FOREIGN KEY (org_id, user_id) REFERENCES lv_control.users (org_id, id) ON DELETE CASCADE
);
CREATE INDEX memberships_user_idx ON lv_control.memberships (user_id);
CREATE INDEX memberships_org_idx ON lv_control.memberships (org_id);

ALTER TABLE lv_control.organizations ENABLE ROW LEVEL SECURITY;
ALTER TABLE lv_control.organizations FORCE ROW LEVEL SECURITY;
ALTER TABLE lv_control.users ENABLE ROW LEVEL SECURITY;
ALTER TABLE lv_control.users FORCE ROW LEVEL SECURITY;
ALTER TABLE lv_control.projects ENABLE ROW LEVEL SECURITY;
ALTER TABLE lv_control.projects FORCE ROW LEVEL SECURITY;
ALTER TABLE lv_control.project_credentials ENABLE ROW LEVEL SECURITY;
ALTER TABLE lv_control.project_credentials FORCE ROW LEVEL SECURITY;
ALTER TABLE lv_control.memberships ENABLE ROW LEVEL SECURITY;
ALTER TABLE lv_control.memberships FORCE ROW LEVEL SECURITY;

CREATE POLICY tenant ON lv_control.organizations FOR ALL TO lv_app
  USING (id = (SELECT lv_control.current_org()) OR (SELECT lv_control.is_system()))
  WITH CHECK (id = (SELECT lv_control.current_org()) OR (SELECT lv_control.is_system()));
CREATE POLICY tenant ON lv_control.users FOR ALL TO lv_app
  USING (org_id = (SELECT lv_control.current_org())
         OR id = (SELECT lv_control.current_user_id())
         OR (SELECT lv_control.is_system()))
  WITH CHECK (org_id = (SELECT lv_control.current_org()) OR (SELECT lv_control.is_system()));
CREATE POLICY tenant ON lv_control.projects FOR ALL TO lv_app
  USING (org_id = (SELECT lv_control.current_org()) OR (SELECT lv_control.is_system()))
  WITH CHECK (org_id = (SELECT lv_control.current_org()) OR (SELECT lv_control.is_system()));
-- credentials are written when a project is created and read back only by the platform itself
CREATE POLICY create_project ON lv_control.project_credentials FOR INSERT TO lv_app
  WITH CHECK (org_id = (SELECT lv_control.current_org()) OR (SELECT lv_control.is_system()));
CREATE POLICY platform ON lv_control.project_credentials FOR ALL TO lv_app
  USING ((SELECT lv_control.is_system())) WITH CHECK ((SELECT lv_control.is_system()));
CREATE POLICY tenant ON lv_control.memberships FOR ALL TO lv_app
  USING (org_id = (SELECT lv_control.current_org()) OR (SELECT lv_control.is_system()))
  WITH CHECK (org_id = (SELECT lv_control.current_org()) OR (SELECT lv_control.is_system()));
-- the provisioning function (owned by lv_owner) checks that the project exists
CREATE POLICY provisioning ON lv_control.projects FOR SELECT TO lv_owner USING (true);

GRANT USAGE ON SCHEMA lv_control TO lv_app;
GRANT EXECUTE ON FUNCTION lv_control.current_org(), lv_control.current_user_id(),
  lv_control.is_system() TO lv_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON lv_control.organizations, lv_control.users,
  lv_control.projects, lv_control.memberships, lv_control.project_credentials TO lv_app;
"""


def upgrade() -> None:
    op.get_bind().exec_driver_sql(UPGRADE)


def downgrade() -> None:
    raise NotImplementedError("LabelVault migrations are forward-only")
