"""The per-project schema: its versioned DDL and the provisioning function that applies it.

Every project gets schema ``p_<uuid hex>`` owned by ``lv_owner`` and LOGIN role ``lv_p_<uuid hex>``
with rights on that schema only. The DDL lives here as numbered steps; ``migrate`` compiles them
into one SECURITY DEFINER function, ``lv_control.provision_project(project uuid, verifier text)``,
owned by ``lv_owner``. The runtime role may execute it but can pass nothing that becomes DDL: the
names derive from the UUID, the credential arrives as a SCRAM verifier. One call brings one project
schema to the current version inside the caller's transaction, so provisioning is all-or-nothing
and safe to retry, and ``migrate`` reuses the very same function for every existing project.

Inside a step, ``{s}`` is the project schema and ``{r}`` the project role (both quoted), and
``{id}`` the project's UUID. RLS
policies read the acting user and role from per-transaction settings through ``lv_user()`` and
``lv_role()``, which return NULL when unset, so every policy denies without context.
"""

from __future__ import annotations

from labelvault.db.audit_sql import project_audit_sql
from labelvault.db.names import CONTROL_SCHEMA, MIGRATION_LOCK_KEY, OWNER_ROLE, RUNTIME_ROLE
from labelvault.db.pipeline_sql import (
    CLAIM_STEP,
    EXPORT_EXPIRY_STEP,
    EXPORT_GUARD_STEP,
    IMPORT_REPORT_STEP,
    INTEGRITY_STEP,
    PIPELINE_STEP,
    POLICY_FUNCTIONS_STEP,
)

_V1 = r"""
CREATE SCHEMA IF NOT EXISTS {s} AUTHORIZATION lv_owner;
REVOKE ALL ON SCHEMA {s} FROM PUBLIC;
GRANT USAGE ON SCHEMA {s} TO {r};

CREATE TABLE {s}.lv_schema_meta (version integer NOT NULL);
INSERT INTO {s}.lv_schema_meta VALUES (0);

CREATE FUNCTION {s}.lv_user() RETURNS uuid LANGUAGE sql STABLE PARALLEL SAFE
  AS $f$ SELECT NULLIF(current_setting('lv.user_id', true), '')::uuid $f$;
CREATE FUNCTION {s}.lv_role() RETURNS text LANGUAGE sql STABLE PARALLEL SAFE
  AS $f$ SELECT NULLIF(current_setting('lv.role', true), '') $f$;
REVOKE ALL ON FUNCTION {s}.lv_user(), {s}.lv_role() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION {s}.lv_user(), {s}.lv_role() TO {r};

CREATE TABLE {s}.items (
  id uuid PRIMARY KEY,
  kind text NOT NULL CHECK (kind IN ('text', 'image')),
  content bytea NOT NULL,
  meta bytea,
  subject_ref bytea,
  dedup_key bytea NOT NULL,
  is_gold boolean NOT NULL DEFAULT false,
  import_id uuid,
  created_by uuid NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (dedup_key)
);
CREATE INDEX ON {s}.items (import_id);
CREATE INDEX ON {s}.items (subject_ref) WHERE subject_ref IS NOT NULL;

CREATE TABLE {s}.tasks (
  id uuid PRIMARY KEY,
  item_id uuid NOT NULL REFERENCES {s}.items (id) ON DELETE CASCADE,
  slot smallint NOT NULL DEFAULT 0 CHECK (slot >= 0),
  assignee uuid,
  state text NOT NULL DEFAULT 'open' CHECK (state IN
    ('open', 'assigned', 'leased', 'submitted', 'in_review', 'accepted', 'rejected', 'skipped')),
  lease_expires_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (item_id, slot)
);
CREATE INDEX ON {s}.tasks (assignee, state);


ALTER TABLE {s}.items ENABLE ROW LEVEL SECURITY;
ALTER TABLE {s}.items FORCE ROW LEVEL SECURITY;
ALTER TABLE {s}.tasks ENABLE ROW LEVEL SECURITY;
ALTER TABLE {s}.tasks FORCE ROW LEVEL SECURITY;

-- the platform's own jobs (imports, exports, re-encryption, purges), under an explicit context
CREATE POLICY items_system ON {s}.items FOR ALL TO {r}
  USING ((SELECT {s}.lv_role()) = 'system') WITH CHECK ((SELECT {s}.lv_role()) = 'system');
CREATE POLICY items_import ON {s}.items FOR INSERT TO {r}
  WITH CHECK ((SELECT {s}.lv_role()) IN ('manager', 'data_owner')
              AND created_by = (SELECT {s}.lv_user()));
-- an annotator reads the content of the items of their own tasks, nothing else
CREATE POLICY items_annotator ON {s}.items FOR SELECT TO {r}
  USING ((SELECT {s}.lv_role()) = 'annotator' AND EXISTS (
    SELECT 1 FROM {s}.tasks t WHERE t.item_id = items.id AND t.assignee = (SELECT {s}.lv_user())));

CREATE POLICY tasks_system ON {s}.tasks FOR ALL TO {r}
  USING ((SELECT {s}.lv_role()) = 'system') WITH CHECK ((SELECT {s}.lv_role()) = 'system');
-- managers steer assignment; task rows hold no content
CREATE POLICY tasks_manager ON {s}.tasks FOR ALL TO {r}
  USING ((SELECT {s}.lv_role()) = 'manager') WITH CHECK ((SELECT {s}.lv_role()) = 'manager');
CREATE POLICY tasks_data_owner ON {s}.tasks FOR SELECT TO {r}
  USING ((SELECT {s}.lv_role()) = 'data_owner');
CREATE POLICY tasks_annotator ON {s}.tasks FOR ALL TO {r}
  USING ((SELECT {s}.lv_role()) = 'annotator' AND assignee = (SELECT {s}.lv_user()))
  WITH CHECK ((SELECT {s}.lv_role()) = 'annotator' AND assignee = (SELECT {s}.lv_user()));

GRANT SELECT, INSERT, UPDATE, DELETE ON {s}.items, {s}.tasks TO {r};
"""

# Append new steps; never edit a released one (projects already ran it).
PROJECT_STEPS: list[str] = [
    _V1,
    project_audit_sql(),
    PIPELINE_STEP,
    CLAIM_STEP,
    POLICY_FUNCTIONS_STEP,
    INTEGRITY_STEP,
    IMPORT_REPORT_STEP,
    EXPORT_EXPIRY_STEP,
    EXPORT_GUARD_STEP,
]


def current_project_version() -> int:
    return len(PROJECT_STEPS)


def _dollar_quote(body: str, tag: str) -> str:
    if f"${tag}$" in body:
        raise ValueError(f"step contains the quote tag {tag}")
    return f"${tag}${body}${tag}$"


_B64 = "[A-Za-z0-9+/=]+"
_VERIFIER_RE = f"'^SCRAM-SHA-256\\$[0-9]+:{_B64}\\${_B64}:{_B64}$'"


def provisioning_function_sql() -> str:
    """The CREATE OR REPLACE of ``lv_control.provision_project``, compiled from PROJECT_STEPS."""
    blocks = []
    for number, step in enumerate(PROJECT_STEPS, start=1):
        blocks.append(
            f"  IF v < {number} THEN\n"
            f"    EXECUTE replace(replace(replace({_dollar_quote(step, 'lvstep')}, "
            "'{s}', quote_ident(s)), '{r}', quote_ident(r)), '{id}', p_project::text);\n"
            f"    v := {number};\n"
            "  END IF;\n"
        )
    steps = "".join(blocks)
    return f"""
CREATE OR REPLACE FUNCTION {CONTROL_SCHEMA}.provision_project(p_project uuid, p_verifier text)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  hex text := replace(p_project::text, '-', '');
  s text := 'p_' || hex;
  r text := 'lv_p_' || hex;
  v integer := 0;
BEGIN
  IF p_project IS NULL THEN
    RAISE EXCEPTION 'project id required' USING ERRCODE = '22023';
  END IF;
  IF NOT EXISTS (SELECT 1 FROM {CONTROL_SCHEMA}.projects WHERE id = p_project) THEN
    RAISE EXCEPTION 'no such project' USING ERRCODE = '42704';
  END IF;
  IF p_verifier IS NOT NULL AND p_verifier !~ {_VERIFIER_RE} THEN
    RAISE EXCEPTION 'a SCRAM-SHA-256 verifier is required' USING ERRCODE = '22023';
  END IF;
  PERFORM pg_advisory_xact_lock({MIGRATION_LOCK_KEY}, hashtext(s));
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
    IF p_verifier IS NULL THEN
      RAISE EXCEPTION 'a credential is required for a new project role' USING ERRCODE = '22023';
    END IF;
    EXECUTE format('CREATE ROLE %I LOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE '
                   'NOBYPASSRLS NOREPLICATION PASSWORD %L', r, p_verifier);
  ELSIF p_verifier IS NOT NULL THEN
    EXECUTE format('ALTER ROLE %I PASSWORD %L', r, p_verifier);
  END IF;
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), r);
  EXECUTE format('ALTER ROLE %I SET search_path = %I, pg_catalog', r, s);
  IF to_regclass(format('%I.lv_schema_meta', s)) IS NOT NULL THEN
    EXECUTE format('SELECT version FROM %I.lv_schema_meta', s) INTO v;
  END IF;
{steps}  EXECUTE format('UPDATE %I.lv_schema_meta SET version = $1', s) USING v;
  RETURN v;
END
$fn$;
ALTER FUNCTION {CONTROL_SCHEMA}.provision_project(uuid, text) OWNER TO {OWNER_ROLE};
REVOKE ALL ON FUNCTION {CONTROL_SCHEMA}.provision_project(uuid, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION {CONTROL_SCHEMA}.provision_project(uuid, text) TO {RUNTIME_ROLE};
"""
