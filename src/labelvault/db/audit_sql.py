"""DDL of the audit chains (control plane and per project), shared by both migration kinds.

Appending and chaining are two steps, so that recording an event never serialises the
transactions that record them (a chain-wide lock held through COMMIT would cap a project at one
fsync per event):

1. ``audit_append(body)`` runs inside the action's transaction and only INSERTs the canonical
   body with its database time into ``audit_pending``: the action cannot commit without its
   record, and a failed append fails the action. No lock is taken.
2. ``audit_seal()`` (called by the server within a fraction of a second, by the checkpointer and
   before every read of the trail) takes the chain's advisory lock and moves committed pending
   events, in order, into ``audit_events``: next sequence number, monotonic time in microseconds,
   leaf hash ``sha256(0x00 || body)`` and link hash
   ``sha256(prev_hash || int8send(seq) || int8send(ts_us) || leaf)``.

Both are SECURITY DEFINER functions owned by ``lv_owner``; the runtime and project roles hold no
privilege on either table besides reading the trail where RLS allows. Triggers refuse UPDATE,
DELETE and TRUNCATE of chained events even to the owner; pending events may only be deleted by
the sealer, in the transaction that chains them.
"""

from __future__ import annotations

# b"labelvault-audit-v1\x00" (labelvault.audit.chain.GENESIS_PREFIX)
GENESIS_PREFIX_HEX = "6c6162656c7661756c742d61756469742d763100"
AUDIT_LOCK_CLASS = 0x4C56_4155  # "LVAU"
SEAL_BATCH = 5000


def _append_function(schema: str, chain_id_sql: str, *, with_org: bool) -> str:
    org_param = ", p_org uuid" if with_org else ""
    org_col = ", org_id" if with_org else ""
    org_val = ", p_org" if with_org else ""
    sig = "bytea, uuid" if with_org else "bytea"
    pending_org = ", r.org_id" if with_org else ""
    return f"""
CREATE FUNCTION {schema}.audit_append(p_body bytea{org_param}) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$
DECLARE
  new_id bigint;
BEGIN
  IF p_body IS NULL OR length(p_body) = 0 OR length(p_body) > 65536 THEN
    RAISE EXCEPTION 'audit event body missing or too large' USING ERRCODE = '22023';
  END IF;
  INSERT INTO {schema}.audit_pending (ts_us, body{org_col})
    VALUES ((extract(epoch FROM clock_timestamp()) * 1000000)::bigint, p_body{org_val})
    RETURNING id INTO new_id;
  RETURN new_id;
END
$f$;
ALTER FUNCTION {schema}.audit_append({sig}) OWNER TO lv_owner;
REVOKE ALL ON FUNCTION {schema}.audit_append({sig}) FROM PUBLIC;

CREATE FUNCTION {schema}.audit_seal(p_max integer DEFAULT {SEAL_BATCH}) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$
DECLARE
  chain text := {chain_id_sql};
  last_seq bigint;
  last_hash bytea;
  last_ts bigint;
  ts bigint;
  leaf bytea;
  link bytea;
  sealed integer := 0;
  r record;
BEGIN
  PERFORM pg_advisory_xact_lock({AUDIT_LOCK_CLASS}, hashtext(chain));
  PERFORM set_config('lv.audit_sealing', 'on', true);
  SELECT seq, chain_hash, ts_us INTO last_seq, last_hash, last_ts
    FROM {schema}.audit_events ORDER BY seq DESC LIMIT 1;
  IF last_seq IS NULL THEN
    last_seq := 0;
    last_hash := sha256('\\x{GENESIS_PREFIX_HEX}'::bytea || convert_to(chain, 'UTF8'));
    last_ts := 0;
  END IF;
  FOR r IN SELECT * FROM {schema}.audit_pending ORDER BY id
           LIMIT greatest(coalesce(p_max, {SEAL_BATCH}), 1) LOOP
    last_seq := last_seq + 1;
    ts := greatest(r.ts_us, last_ts);
    leaf := sha256('\\x00'::bytea || r.body);
    link := sha256(last_hash || int8send(last_seq) || int8send(ts) || leaf);
    INSERT INTO {schema}.audit_events (seq, ts_us, body, leaf, prev_hash, chain_hash{org_col})
      VALUES (last_seq, ts, r.body, leaf, last_hash, link{pending_org});
    DELETE FROM {schema}.audit_pending WHERE id = r.id;
    last_hash := link;
    last_ts := ts;
    sealed := sealed + 1;
  END LOOP;
  RETURN sealed;
END
$f$;
ALTER FUNCTION {schema}.audit_seal(integer) OWNER TO lv_owner;
REVOKE ALL ON FUNCTION {schema}.audit_seal(integer) FROM PUBLIC;
"""


def _events_table(schema: str, *, with_org: bool) -> str:
    org = "  org_id uuid,\n" if with_org else ""
    return f"""
CREATE TABLE {schema}.audit_events (
  seq bigint PRIMARY KEY,
  ts_us bigint NOT NULL,
  body bytea NOT NULL,
  leaf bytea NOT NULL,
  prev_hash bytea NOT NULL,
  chain_hash bytea NOT NULL,
{org}  UNIQUE (chain_hash)
);
CREATE FUNCTION {schema}.audit_immutable() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
  RAISE EXCEPTION 'audit events are append-only' USING ERRCODE = '42501';
END
$f$;
CREATE TRIGGER audit_no_update BEFORE UPDATE OR DELETE ON {schema}.audit_events
  FOR EACH ROW EXECUTE FUNCTION {schema}.audit_immutable();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON {schema}.audit_events
  FOR EACH STATEMENT EXECUTE FUNCTION {schema}.audit_immutable();
ALTER TABLE {schema}.audit_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE {schema}.audit_events FORCE ROW LEVEL SECURITY;
-- the sealer runs as lv_owner: it may read the head and insert, nothing else
CREATE POLICY append_read ON {schema}.audit_events FOR SELECT TO lv_owner USING (true);
CREATE POLICY append_insert ON {schema}.audit_events FOR INSERT TO lv_owner WITH CHECK (true);

-- committed events waiting to be chained (for a fraction of a second)
CREATE TABLE {schema}.audit_pending (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  ts_us bigint NOT NULL,
{org}  body bytea NOT NULL
);
CREATE FUNCTION {schema}.audit_pending_guard() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
  IF TG_OP = 'DELETE' AND current_setting('lv.audit_sealing', true) = 'on' THEN
    RETURN OLD;
  END IF;
  RAISE EXCEPTION 'pending audit events are only moved into the chain' USING ERRCODE = '42501';
END
$f$;
CREATE TRIGGER audit_pending_guard BEFORE UPDATE OR DELETE ON {schema}.audit_pending
  FOR EACH ROW EXECUTE FUNCTION {schema}.audit_pending_guard();
CREATE TRIGGER audit_pending_no_truncate BEFORE TRUNCATE ON {schema}.audit_pending
  FOR EACH STATEMENT EXECUTE FUNCTION {schema}.audit_immutable();
ALTER TABLE {schema}.audit_pending ENABLE ROW LEVEL SECURITY;
ALTER TABLE {schema}.audit_pending FORCE ROW LEVEL SECURITY;
CREATE POLICY sealer ON {schema}.audit_pending FOR ALL TO lv_owner USING (true) WITH CHECK (true);
"""


def control_audit_sql() -> str:
    return (
        _events_table("lv_control", with_org=True)
        + _append_function("lv_control", "'control'", with_org=True)
        + r"""
CREATE INDEX audit_events_org_idx ON lv_control.audit_events (org_id, seq);
CREATE POLICY trail_read ON lv_control.audit_events FOR SELECT TO lv_app
  USING (org_id = (SELECT lv_control.current_org()) OR (SELECT lv_control.is_system()));
GRANT SELECT ON lv_control.audit_events TO lv_app;
GRANT EXECUTE ON FUNCTION lv_control.audit_append(bytea, uuid) TO lv_app;
GRANT EXECUTE ON FUNCTION lv_control.audit_seal(integer) TO lv_app;

-- signed checkpoints of every chain (control and projects), append-only as well
CREATE TABLE lv_control.audit_checkpoints (
  chain_id text NOT NULL,
  size bigint NOT NULL CHECK (size >= 0),
  note text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (chain_id, size)
);
CREATE TRIGGER checkpoints_no_update BEFORE UPDATE OR DELETE ON lv_control.audit_checkpoints
  FOR EACH ROW EXECUTE FUNCTION lv_control.audit_immutable();
CREATE TRIGGER checkpoints_no_truncate BEFORE TRUNCATE ON lv_control.audit_checkpoints
  FOR EACH STATEMENT EXECUTE FUNCTION lv_control.audit_immutable();
ALTER TABLE lv_control.audit_checkpoints ENABLE ROW LEVEL SECURITY;
ALTER TABLE lv_control.audit_checkpoints FORCE ROW LEVEL SECURITY;
CREATE POLICY platform ON lv_control.audit_checkpoints FOR ALL TO lv_app
  USING ((SELECT lv_control.is_system())) WITH CHECK ((SELECT lv_control.is_system()));
GRANT SELECT, INSERT ON lv_control.audit_checkpoints TO lv_app;

-- the checkpoint signing key: an Ed25519 seed wrapped by the key provider
CREATE TABLE lv_control.signing_keys (
  name text PRIMARY KEY,
  public_key bytea NOT NULL,
  wrapped_seed bytea NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE lv_control.signing_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE lv_control.signing_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY platform ON lv_control.signing_keys FOR ALL TO lv_app
  USING ((SELECT lv_control.is_system())) WITH CHECK ((SELECT lv_control.is_system()));
GRANT SELECT, INSERT ON lv_control.signing_keys TO lv_app;
"""
    )


def project_audit_sql() -> str:
    """The project step that adds the project's own chain (``{s}``, ``{r}``, ``{id}`` filled in)."""
    return (
        _events_table("{s}", with_org=False)
        + _append_function("{s}", "'project:{id}'", with_org=False)
        + r"""
-- managers and data owners read their project's trail; annotators and reviewers cannot
CREATE POLICY trail_read ON {s}.audit_events FOR SELECT TO {r}
  USING ((SELECT {s}.lv_role()) IN ('manager', 'data_owner', 'system'));
GRANT SELECT ON {s}.audit_events TO {r};
GRANT EXECUTE ON FUNCTION {s}.audit_append(bytea) TO {r};
GRANT EXECUTE ON FUNCTION {s}.audit_seal(integer) TO {r};
"""
    )
