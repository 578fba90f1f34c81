"""The request path's control-plane lookups as single statements.

Revision ID: 0006
Revises: 0005

Authenticating an API token and resolving its roles in the path's project took six round trips
(BEGIN, system context, token lookup, the token user's context, membership, COMMIT) on every
request; listing a project's reviewers took four. These functions run the same queries, under the
same row-level security (they are SECURITY INVOKER: the runtime role's own policies apply, and
they set the same per-transaction context the application would set), in one statement that is
its own transaction. Each one clears the context before returning, so a caller that (wrongly)
used it inside a longer transaction is left with no context at all, which fails closed.
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE FUNCTION lv_control.token_access(p_hash text, p_project uuid)
RETURNS TABLE (id uuid, user_id uuid, project_ids uuid[], max_role text,
               expires_at timestamptz, revoked_at timestamptz, last_used_at timestamptz,
               now timestamptz, org_id uuid, status text, is_system_admin boolean,
               is_org_admin boolean, org_status text,
               project_org uuid, project_region text, member_role text)
LANGUAGE plpgsql SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
BEGIN
  -- the token lookup runs in the platform's context, exactly as the application's own
  PERFORM set_config('lv.user_id', '', true), set_config('lv.org_id', '', true),
          set_config('lv.system', 'on', true);
  SELECT t.id, t.user_id, t.project_ids, t.max_role, t.expires_at, t.revoked_at,
         t.last_used_at, now(), u.org_id, u.status, u.is_system_admin, u.is_org_admin,
         coalesce(o.status, 'active')
    INTO id, user_id, project_ids, max_role, expires_at, revoked_at, last_used_at, now,
         org_id, status, is_system_admin, is_org_admin, org_status
    FROM lv_control.api_tokens t
    JOIN lv_control.users u ON u.id = t.user_id
    LEFT JOIN lv_control.organizations o ON o.id = u.org_id
   WHERE t.token_hash = p_hash;
  IF NOT FOUND THEN
    PERFORM set_config('lv.system', '', true);
    RETURN;
  END IF;
  -- the project lookup in the token user's own context (a token never carries the user's
  -- administrator rights): row-level security shows only projects of their organization
  IF p_project IS NOT NULL AND p_project = ANY (project_ids) THEN
    PERFORM set_config('lv.user_id', user_id::text, true),
            set_config('lv.org_id', coalesce(org_id::text, ''), true),
            set_config('lv.system', '', true);
    SELECT p.org_id, p.region, m.role INTO project_org, project_region, member_role
      FROM lv_control.projects p
      LEFT JOIN lv_control.memberships m ON m.project_id = p.id AND m.user_id = token_access.user_id
     WHERE p.id = p_project AND p.status = 'active';
  END IF;
  PERFORM set_config('lv.user_id', '', true), set_config('lv.org_id', '', true),
          set_config('lv.system', '', true);
  RETURN NEXT;
END
$f$;

CREATE FUNCTION lv_control.project_member_ids(p_project uuid, p_role text)
RETURNS SETOF uuid
LANGUAGE plpgsql SECURITY INVOKER SET search_path = pg_catalog, pg_temp AS $f$
BEGIN
  PERFORM set_config('lv.user_id', '', true), set_config('lv.org_id', '', true),
          set_config('lv.system', 'on', true);
  RETURN QUERY
    SELECT m.user_id FROM lv_control.memberships m
      JOIN lv_control.users u ON u.id = m.user_id AND u.status = 'active'
     WHERE m.project_id = p_project AND m.role = p_role ORDER BY m.user_id;
  PERFORM set_config('lv.system', '', true);
END
$f$;

REVOKE ALL ON FUNCTION lv_control.token_access(text, uuid),
  lv_control.project_member_ids(uuid, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION lv_control.token_access(text, uuid),
  lv_control.project_member_ids(uuid, text) TO lv_app;
"""


def upgrade() -> None:
    op.get_bind().exec_driver_sql(UPGRADE)


def downgrade() -> None:
    raise NotImplementedError("LabelVault migrations are forward-only")
