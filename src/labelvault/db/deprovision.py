"""Dropping a deleted project's schema and role: ``lv_control.drop_project(project uuid)``.

The counterpart of ``lv_control.provision_project`` (:mod:`labelvault.db.project_schema`): a
SECURITY DEFINER function owned by ``lv_owner`` that the runtime role may execute. It accepts a
UUID and nothing else; the schema ``p_<hex>`` and role ``lv_p_<hex>`` are derived from it, so it
can never name the control schema or any other object. It refuses:

* a call outside the platform's system context (``lv.system`` unset);
* a project that does not exist, or whose status is not ``deleting`` (the deletion flow marks it
  first, in its own committed transaction, so an active project is never dropped);
* any derived name that is not exactly ``p_<32 hex>`` / ``lv_p_<32 hex>`` (belt and braces).

It ends only the sessions of that project's own role: the role is made NOLOGIN, lv_owner takes
membership of it for the rest of the transaction (it holds ADMIN on roles it created), which lets
``pg_terminate_backend`` end those backends and nothing else; a backend it still may not signal
is left alone and the drop waits for it at most ``lock_timeout`` (15 s), then fails cleanly.
Then ``DROP SCHEMA ... CASCADE`` (tables, functions, the project's audit trail), the database
grant, and ``DROP ROLE``. Idempotent: a rerun after a crash drops what is left and returns
false when nothing was left.
"""

from __future__ import annotations

from labelvault.db.names import CONTROL_SCHEMA, MIGRATION_LOCK_KEY, OWNER_ROLE, RUNTIME_ROLE

DROP_LOCK_TIMEOUT = "15s"


def drop_function_sql() -> str:
    """The CREATE OR REPLACE of ``lv_control.drop_project`` (run by ``migrate`` as lv_owner)."""
    return f"""
CREATE OR REPLACE FUNCTION {CONTROL_SCHEMA}.drop_project(p_project uuid)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  hex text := replace(p_project::text, '-', '');
  s text := 'p_' || hex;
  r text := 'lv_p_' || hex;
  st text;
  victim integer;
  dropped boolean := false;
BEGIN
  IF p_project IS NULL THEN
    RAISE EXCEPTION 'project id required' USING ERRCODE = '22023';
  END IF;
  IF NOT coalesce(NULLIF(current_setting('lv.system', true), '') = 'on', false) THEN
    RAISE EXCEPTION 'only the platform itself drops projects' USING ERRCODE = '42501';
  END IF;
  IF s = '{CONTROL_SCHEMA}' OR s !~ '^p_[0-9a-f]{{32}}$' OR r !~ '^lv_p_[0-9a-f]{{32}}$' THEN
    RAISE EXCEPTION 'refusing to drop %', s USING ERRCODE = '42501';
  END IF;
  SELECT status INTO st FROM {CONTROL_SCHEMA}.projects WHERE id = p_project;
  IF st IS NULL THEN
    RAISE EXCEPTION 'no such project' USING ERRCODE = '42704';
  END IF;
  IF st <> 'deleting' THEN
    RAISE EXCEPTION 'project is %, not deleting: mark it deleting first', st
      USING ERRCODE = '55000';
  END IF;
  PERFORM pg_advisory_xact_lock({MIGRATION_LOCK_KEY}, hashtext(s));
  PERFORM set_config('lock_timeout', '{DROP_LOCK_TIMEOUT}', true);
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
    EXECUTE format('ALTER ROLE %I NOLOGIN', r);
    EXECUTE format('GRANT %I TO %I WITH INHERIT TRUE, SET FALSE', r, '{OWNER_ROLE}');
    FOR victim IN SELECT a.pid FROM pg_stat_activity a
                   WHERE a.usename = r AND a.pid <> pg_backend_pid() LOOP
      BEGIN
        PERFORM pg_terminate_backend(victim, 5000);
      EXCEPTION WHEN insufficient_privilege THEN
        NULL;  -- not ours to end: the drop waits for it (lock_timeout) instead
      END;
    END LOOP;
  END IF;
  IF EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = s) THEN
    EXECUTE format('DROP SCHEMA %I CASCADE', s);
    dropped := true;
  END IF;
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
    EXECUTE format('REVOKE ALL ON DATABASE %I FROM %I', current_database(), r);
    EXECUTE format('DROP ROLE %I', r);
    dropped := true;
  END IF;
  RETURN dropped;
END
$fn$;
ALTER FUNCTION {CONTROL_SCHEMA}.drop_project(uuid) OWNER TO {OWNER_ROLE};
REVOKE ALL ON FUNCTION {CONTROL_SCHEMA}.drop_project(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION {CONTROL_SCHEMA}.drop_project(uuid) TO {RUNTIME_ROLE};
"""
