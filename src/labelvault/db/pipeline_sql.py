"""DDL of the labelling pipeline inside each project schema (project steps 3 to 6).

Who sees what is decided here, by row-level security on the per-transaction role and user:

* annotators: their own tasks, the items of those tasks, their own annotations, the reviews of
  their own annotations (to read a rejection);
* reviewers: the annotations in their own review queue and those annotations' items;
* managers: tasks, settings, imports, exports (no item content, no annotation result);
* data owners: imports, exports, task states;
* ``system``: the platform's own jobs (imports, exports, aggregates, re-encryption).

Claiming the next task needs to see unassigned tasks, which no annotator may list: it goes
through ``claim_next_task()``, a SECURITY DEFINER function that acts for ``lv_user()`` only.
"""

from __future__ import annotations

PIPELINE_STEP = r"""
CREATE TABLE {s}.settings (
  id boolean PRIMARY KEY DEFAULT true CHECK (id),
  label_schema jsonb,
  overlap smallint NOT NULL DEFAULT 1 CHECK (overlap BETWEEN 1 AND 10),
  auto_distribution boolean NOT NULL DEFAULT true,
  review_share real NOT NULL DEFAULT 1.0 CHECK (review_share >= 0 AND review_share <= 1),
  export_requires_approval boolean NOT NULL DEFAULT true,
  lease_seconds integer NOT NULL DEFAULT 900 CHECK (lease_seconds BETWEEN 30 AND 86400),
  -- the project's HMAC key for deduplication (a plain content hash would leak), encrypted
  dedup_key bytea,
  updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO {s}.settings DEFAULT VALUES;

ALTER TABLE {s}.items ADD COLUMN blob_id text, ADD COLUMN width integer,
  ADD COLUMN height integer, ADD COLUMN text_length integer;

CREATE TABLE {s}.gold_answers (
  item_id uuid PRIMARY KEY REFERENCES {s}.items (id) ON DELETE CASCADE,
  result bytea NOT NULL
);

CREATE TABLE {s}.imports (
  id uuid PRIMARY KEY,
  created_by uuid NOT NULL,
  format text NOT NULL,
  items_added integer NOT NULL DEFAULT 0,
  duplicates integer NOT NULL DEFAULT 0,
  rejected integer NOT NULL DEFAULT 0,
  report jsonb NOT NULL DEFAULT '[]'::jsonb,
  created_at timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE {s}.tasks ADD COLUMN origin text NOT NULL DEFAULT 'auto'
  CHECK (origin IN ('auto', 'assigned')), ADD COLUMN leased_at timestamptz,
  ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY;
CREATE INDEX tasks_open_idx ON {s}.tasks (created_at, seq) WHERE state = 'open';
CREATE INDEX tasks_lease_idx ON {s}.tasks (lease_expires_at) WHERE state = 'leased';
CREATE INDEX tasks_item_assignee_idx ON {s}.tasks (item_id, assignee);

CREATE TABLE {s}.task_skips (
  item_id uuid NOT NULL REFERENCES {s}.items (id) ON DELETE CASCADE,
  user_id uuid NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (item_id, user_id)
);

CREATE TABLE {s}.annotations (
  id uuid PRIMARY KEY,
  task_id uuid NOT NULL UNIQUE REFERENCES {s}.tasks (id) ON DELETE CASCADE,
  item_id uuid NOT NULL REFERENCES {s}.items (id) ON DELETE CASCADE,
  annotator uuid NOT NULL,
  result bytea NOT NULL,
  version integer NOT NULL DEFAULT 1,
  state text NOT NULL CHECK (state IN ('submitted', 'in_review', 'accepted', 'rejected',
                                       'corrected')),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX annotations_annotator_idx ON {s}.annotations (annotator, updated_at DESC);
CREATE INDEX annotations_item_idx ON {s}.annotations (item_id);

CREATE TABLE {s}.reviews (
  id uuid PRIMARY KEY,
  annotation_id uuid NOT NULL UNIQUE REFERENCES {s}.annotations (id) ON DELETE CASCADE,
  annotator uuid NOT NULL,
  reviewer uuid NOT NULL CHECK (reviewer <> annotator),
  state text NOT NULL DEFAULT 'pending'
    CHECK (state IN ('pending', 'accepted', 'rejected', 'corrected')),
  comment bytea,
  corrected_result bytea,
  created_at timestamptz NOT NULL DEFAULT now(),
  decided_at timestamptz
);
CREATE INDEX reviews_reviewer_idx ON {s}.reviews (reviewer, state, created_at);

CREATE TABLE {s}.exports (
  id uuid PRIMARY KEY,
  requested_by uuid NOT NULL,
  format text NOT NULL CHECK (format IN ('jsonl', 'csv', 'parquet', 'coco')),
  only_accepted boolean NOT NULL DEFAULT true,
  state text NOT NULL CHECK (state IN ('pending_approval', 'approved', 'building', 'ready',
                                       'downloaded', 'rejected', 'failed', 'expired')),
  approved_by uuid,
  decided_at timestamptz,
  blob_id text,
  manifest jsonb,
  item_count integer,
  download_token_hash text,
  download_expires_at timestamptz,
  downloaded_at timestamptz,
  error text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CHECK (approved_by IS NULL OR approved_by <> requested_by)
);

ALTER TABLE {s}.settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE {s}.settings FORCE ROW LEVEL SECURITY;
ALTER TABLE {s}.gold_answers ENABLE ROW LEVEL SECURITY;
ALTER TABLE {s}.gold_answers FORCE ROW LEVEL SECURITY;
ALTER TABLE {s}.imports ENABLE ROW LEVEL SECURITY;
ALTER TABLE {s}.imports FORCE ROW LEVEL SECURITY;
ALTER TABLE {s}.task_skips ENABLE ROW LEVEL SECURITY;
ALTER TABLE {s}.task_skips FORCE ROW LEVEL SECURITY;
ALTER TABLE {s}.annotations ENABLE ROW LEVEL SECURITY;
ALTER TABLE {s}.annotations FORCE ROW LEVEL SECURITY;
ALTER TABLE {s}.reviews ENABLE ROW LEVEL SECURITY;
ALTER TABLE {s}.reviews FORCE ROW LEVEL SECURITY;
ALTER TABLE {s}.exports ENABLE ROW LEVEL SECURITY;
ALTER TABLE {s}.exports FORCE ROW LEVEL SECURITY;

-- settings: every member reads (the label schema drives the annotator's screen)
CREATE POLICY settings_read ON {s}.settings FOR SELECT TO {r}
  USING ((SELECT {s}.lv_role()) IS NOT NULL);
CREATE POLICY settings_write ON {s}.settings FOR UPDATE TO {r}
  USING ((SELECT {s}.lv_role()) IN ('manager', 'system'))
  WITH CHECK ((SELECT {s}.lv_role()) IN ('manager', 'system'));
CREATE POLICY settings_owner ON {s}.settings FOR SELECT TO lv_owner USING (true);

CREATE POLICY gold_system ON {s}.gold_answers FOR ALL TO {r}
  USING ((SELECT {s}.lv_role()) = 'system') WITH CHECK ((SELECT {s}.lv_role()) = 'system');
CREATE POLICY gold_import ON {s}.gold_answers FOR INSERT TO {r}
  WITH CHECK ((SELECT {s}.lv_role()) IN ('manager', 'data_owner'));

CREATE POLICY imports_read ON {s}.imports FOR SELECT TO {r}
  USING ((SELECT {s}.lv_role()) IN ('manager', 'data_owner', 'system'));
CREATE POLICY imports_write ON {s}.imports FOR INSERT TO {r}
  WITH CHECK ((SELECT {s}.lv_role()) IN ('manager', 'data_owner', 'system')
              AND (created_by = (SELECT {s}.lv_user()) OR (SELECT {s}.lv_role()) = 'system'));

CREATE POLICY skips_own ON {s}.task_skips FOR ALL TO {r}
  USING ((SELECT {s}.lv_role()) = 'annotator' AND user_id = (SELECT {s}.lv_user()))
  WITH CHECK ((SELECT {s}.lv_role()) = 'annotator' AND user_id = (SELECT {s}.lv_user()));
CREATE POLICY skips_manage ON {s}.task_skips FOR ALL TO {r}
  USING ((SELECT {s}.lv_role()) IN ('manager', 'system'))
  WITH CHECK ((SELECT {s}.lv_role()) IN ('manager', 'system'));
CREATE POLICY skips_claim ON {s}.task_skips FOR SELECT TO lv_owner USING (true);

-- the claim function (SECURITY DEFINER, owned by lv_owner) hands out open slots
CREATE POLICY tasks_claim ON {s}.tasks FOR ALL TO lv_owner USING (true) WITH CHECK (true);

CREATE POLICY annotations_own ON {s}.annotations FOR SELECT TO {r}
  USING ((SELECT {s}.lv_role()) = 'annotator' AND annotator = (SELECT {s}.lv_user()));
CREATE POLICY annotations_submit ON {s}.annotations FOR INSERT TO {r}
  WITH CHECK ((SELECT {s}.lv_role()) = 'annotator' AND annotator = (SELECT {s}.lv_user())
              AND state = 'submitted');
-- an annotator may change their annotation until it is decided (or after a rejection)
CREATE POLICY annotations_edit ON {s}.annotations FOR UPDATE TO {r}
  USING ((SELECT {s}.lv_role()) = 'annotator' AND annotator = (SELECT {s}.lv_user())
         AND state IN ('submitted', 'in_review', 'rejected'))
  WITH CHECK ((SELECT {s}.lv_role()) = 'annotator' AND annotator = (SELECT {s}.lv_user())
              AND state IN ('submitted', 'in_review'));
CREATE POLICY annotations_review ON {s}.annotations FOR SELECT TO {r}
  USING ((SELECT {s}.lv_role()) = 'reviewer' AND EXISTS (
    SELECT 1 FROM {s}.reviews v WHERE v.annotation_id = annotations.id
       AND v.reviewer = (SELECT {s}.lv_user())));
CREATE POLICY annotations_decide ON {s}.annotations FOR UPDATE TO {r}
  USING ((SELECT {s}.lv_role()) = 'reviewer' AND EXISTS (
    SELECT 1 FROM {s}.reviews v WHERE v.annotation_id = annotations.id
       AND v.reviewer = (SELECT {s}.lv_user()) AND v.state = 'pending'))
  WITH CHECK ((SELECT {s}.lv_role()) = 'reviewer'
              AND state IN ('accepted', 'rejected', 'corrected'));
CREATE POLICY annotations_system ON {s}.annotations FOR ALL TO {r}
  USING ((SELECT {s}.lv_role()) = 'system') WITH CHECK ((SELECT {s}.lv_role()) = 'system');

CREATE POLICY reviews_queue ON {s}.reviews FOR SELECT TO {r}
  USING ((SELECT {s}.lv_role()) = 'reviewer' AND reviewer = (SELECT {s}.lv_user()));
CREATE POLICY reviews_decide ON {s}.reviews FOR UPDATE TO {r}
  USING ((SELECT {s}.lv_role()) = 'reviewer' AND reviewer = (SELECT {s}.lv_user())
         AND state = 'pending')
  WITH CHECK ((SELECT {s}.lv_role()) = 'reviewer' AND reviewer = (SELECT {s}.lv_user()));
CREATE POLICY reviews_feedback ON {s}.reviews FOR SELECT TO {r}
  USING ((SELECT {s}.lv_role()) = 'annotator' AND annotator = (SELECT {s}.lv_user()));
-- submitting routes the annotation to a reviewer (never the annotator themselves)
CREATE POLICY reviews_route ON {s}.reviews FOR INSERT TO {r}
  WITH CHECK ((SELECT {s}.lv_role()) = 'annotator' AND annotator = (SELECT {s}.lv_user())
              AND state = 'pending');
CREATE POLICY reviews_reroute ON {s}.reviews FOR UPDATE TO {r}
  USING ((SELECT {s}.lv_role()) = 'annotator' AND annotator = (SELECT {s}.lv_user()))
  WITH CHECK ((SELECT {s}.lv_role()) = 'annotator' AND annotator = (SELECT {s}.lv_user())
              AND state = 'pending');
CREATE POLICY reviews_system ON {s}.reviews FOR ALL TO {r}
  USING ((SELECT {s}.lv_role()) = 'system') WITH CHECK ((SELECT {s}.lv_role()) = 'system');

-- reviewers read the items of the annotations in their queue
CREATE POLICY items_reviewer ON {s}.items FOR SELECT TO {r}
  USING ((SELECT {s}.lv_role()) = 'reviewer' AND EXISTS (
    SELECT 1 FROM {s}.annotations a JOIN {s}.reviews v ON v.annotation_id = a.id
     WHERE a.item_id = items.id AND v.reviewer = (SELECT {s}.lv_user())));
CREATE POLICY tasks_reviewer ON {s}.tasks FOR UPDATE TO {r}
  USING ((SELECT {s}.lv_role()) = 'reviewer' AND EXISTS (
    SELECT 1 FROM {s}.annotations a JOIN {s}.reviews v ON v.annotation_id = a.id
     WHERE a.task_id = tasks.id AND v.reviewer = (SELECT {s}.lv_user())))
  WITH CHECK ((SELECT {s}.lv_role()) = 'reviewer');
CREATE POLICY tasks_reviewer_read ON {s}.tasks FOR SELECT TO {r}
  USING ((SELECT {s}.lv_role()) = 'reviewer' AND EXISTS (
    SELECT 1 FROM {s}.annotations a JOIN {s}.reviews v ON v.annotation_id = a.id
     WHERE a.task_id = tasks.id AND v.reviewer = (SELECT {s}.lv_user())));

CREATE POLICY exports_read ON {s}.exports FOR SELECT TO {r}
  USING ((SELECT {s}.lv_role()) IN ('manager', 'data_owner', 'system'));
CREATE POLICY exports_request ON {s}.exports FOR INSERT TO {r}
  WITH CHECK ((SELECT {s}.lv_role()) IN ('manager', 'data_owner')
              AND requested_by = (SELECT {s}.lv_user()));
-- a second person approves: the table's CHECK refuses the requester as approver
CREATE POLICY exports_decide ON {s}.exports FOR UPDATE TO {r}
  USING ((SELECT {s}.lv_role()) IN ('manager', 'data_owner'))
  WITH CHECK ((SELECT {s}.lv_role()) IN ('manager', 'data_owner'));
CREATE POLICY exports_system ON {s}.exports FOR ALL TO {r}
  USING ((SELECT {s}.lv_role()) = 'system') WITH CHECK ((SELECT {s}.lv_role()) = 'system');

CREATE FUNCTION {s}.claim_next_task() RETURNS TABLE (task_id uuid, item_id uuid)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$
DECLARE
  me uuid := {s}.lv_user();
  lease integer;
  auto boolean;
  t_id uuid;
  t_item uuid;
BEGIN
  IF me IS NULL OR {s}.lv_role() IS DISTINCT FROM 'annotator' THEN
    RAISE EXCEPTION 'only an annotator claims tasks' USING ERRCODE = '42501';
  END IF;
  -- one claim at a time per annotator: never two slots of one item for the same person
  PERFORM pg_advisory_xact_lock(hashtext('{s}'), hashtext(me::text));
  SELECT s.lease_seconds, s.auto_distribution INTO lease, auto FROM {s}.settings s;
  SELECT t.id, t.item_id INTO t_id, t_item FROM {s}.tasks t
   WHERE t.assignee = me AND t.state = 'leased' AND t.lease_expires_at > now()
   ORDER BY t.leased_at LIMIT 1;
  IF t_id IS NOT NULL THEN
    task_id := t_id; item_id := t_item; RETURN NEXT; RETURN;
  END IF;
  UPDATE {s}.tasks t SET state = 'leased', leased_at = now(), updated_at = now(),
         lease_expires_at = now() + make_interval(secs => lease)
   WHERE t.id = (SELECT c.id FROM {s}.tasks c
                  WHERE c.assignee = me
                    AND (c.state = 'assigned'
                         OR (c.state = 'leased' AND c.lease_expires_at <= now()))
                    AND NOT EXISTS (SELECT 1 FROM {s}.task_skips k
                                     WHERE k.item_id = c.item_id AND k.user_id = me)
                  ORDER BY c.created_at, c.slot LIMIT 1 FOR UPDATE SKIP LOCKED)
  RETURNING t.id, t.item_id INTO t_id, t_item;
  -- an open slot first (walking the partial index in order), then an abandoned lease
  IF t_id IS NULL AND auto THEN
    UPDATE {s}.tasks t SET state = 'leased', assignee = me, leased_at = now(),
           updated_at = now(), lease_expires_at = now() + make_interval(secs => lease)
     WHERE t.id = (SELECT c.id FROM {s}.tasks c
                    WHERE c.state = 'open' AND c.origin = 'auto'
                      AND NOT EXISTS (SELECT 1 FROM {s}.tasks o
                                       WHERE o.item_id = c.item_id AND o.assignee = me)
                      AND NOT EXISTS (SELECT 1 FROM {s}.task_skips k
                                       WHERE k.item_id = c.item_id AND k.user_id = me)
                    ORDER BY c.created_at, c.seq LIMIT 1 FOR UPDATE SKIP LOCKED)
    RETURNING t.id, t.item_id INTO t_id, t_item;
  END IF;
  IF t_id IS NULL AND auto THEN
    UPDATE {s}.tasks t SET state = 'leased', assignee = me, leased_at = now(),
           updated_at = now(), lease_expires_at = now() + make_interval(secs => lease)
     WHERE t.id = (SELECT c.id FROM {s}.tasks c
                    WHERE c.state = 'leased' AND c.origin = 'auto'
                      AND c.lease_expires_at <= now()
                      AND NOT EXISTS (SELECT 1 FROM {s}.tasks o
                                       WHERE o.item_id = c.item_id AND o.assignee = me
                                         AND o.id <> c.id)
                      AND NOT EXISTS (SELECT 1 FROM {s}.task_skips k
                                       WHERE k.item_id = c.item_id AND k.user_id = me)
                    ORDER BY c.lease_expires_at LIMIT 1 FOR UPDATE SKIP LOCKED)
    RETURNING t.id, t.item_id INTO t_id, t_item;
  END IF;
  IF t_id IS NOT NULL THEN
    task_id := t_id; item_id := t_item; RETURN NEXT;
  END IF;
  RETURN;
END
$f$;
ALTER FUNCTION {s}.claim_next_task() OWNER TO lv_owner;
REVOKE ALL ON FUNCTION {s}.claim_next_task() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION {s}.claim_next_task() TO {r};

-- fresh planner statistics after a bulk import (the tables belong to lv_owner; without them
-- the first claims after a large import plan as if the tables were empty)
CREATE FUNCTION {s}.refresh_statistics() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$
BEGIN
  ANALYZE {s}.items, {s}.tasks;
END
$f$;
ALTER FUNCTION {s}.refresh_statistics() OWNER TO lv_owner;
REVOKE ALL ON FUNCTION {s}.refresh_statistics() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION {s}.refresh_statistics() TO {r};

GRANT SELECT, UPDATE ON {s}.settings TO {r};
GRANT SELECT, INSERT, UPDATE, DELETE ON {s}.gold_answers, {s}.imports, {s}.task_skips,
  {s}.annotations, {s}.reviews, {s}.exports TO {r};
"""

# Project step 4: the same claim, planned once per connection. Step 3's version let the
# planner turn "not already holding a slot of this item" into an anti-join that read every task
# the annotator ever had (estimated at one row after an import, so the plan stuck) and planned
# all four statements afresh on every call (0.3-1.5 ms each). Here each candidate's checks are
# index probes (an EXISTS with OFFSET 0 stays a per-row subplan on (item_id, assignee)), and the
# function's plans are generic: none of them depends on who is claiming.
CLAIM_STEP = r"""
CREATE OR REPLACE FUNCTION {s}.claim_next_task() RETURNS TABLE (task_id uuid, item_id uuid)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan AS $f$
DECLARE
  me uuid := {s}.lv_user();
  lease integer;
  auto boolean;
  t_id uuid;
  t_item uuid;
BEGIN
  IF me IS NULL OR {s}.lv_role() IS DISTINCT FROM 'annotator' THEN
    RAISE EXCEPTION 'only an annotator claims tasks' USING ERRCODE = '42501';
  END IF;
  -- one claim at a time per annotator: never two slots of one item for the same person
  PERFORM pg_advisory_xact_lock(hashtext('{s}'), hashtext(me::text));
  SELECT s.lease_seconds, s.auto_distribution INTO lease, auto FROM {s}.settings s;
  -- the annotator's current lease
  SELECT t.id, t.item_id INTO t_id, t_item FROM {s}.tasks t
   WHERE t.assignee = me AND t.state = 'leased' AND t.lease_expires_at > now()
   ORDER BY t.leased_at LIMIT 1;
  IF t_id IS NOT NULL THEN
    task_id := t_id; item_id := t_item; RETURN NEXT; RETURN;
  END IF;
  -- their own queue (explicit assignments, or their own expired lease)
  UPDATE {s}.tasks t SET state = 'leased', leased_at = now(), updated_at = now(),
         lease_expires_at = now() + make_interval(secs => lease)
   WHERE t.id = (SELECT c.id FROM {s}.tasks c
                  WHERE c.assignee = me
                    AND (c.state = 'assigned'
                         OR (c.state = 'leased' AND c.lease_expires_at <= now()))
                    AND NOT EXISTS (SELECT 1 FROM {s}.task_skips k
                                     WHERE k.item_id = c.item_id AND k.user_id = me OFFSET 0)
                  ORDER BY c.created_at, c.slot LIMIT 1 FOR UPDATE SKIP LOCKED)
  RETURNING t.id, t.item_id INTO t_id, t_item;
  -- an open slot (walking the partial index in order), then an abandoned lease
  IF t_id IS NULL AND auto THEN
    UPDATE {s}.tasks t SET state = 'leased', assignee = me, leased_at = now(),
           updated_at = now(), lease_expires_at = now() + make_interval(secs => lease)
     WHERE t.id = (SELECT c.id FROM {s}.tasks c
                    WHERE c.state = 'open' AND c.origin = 'auto'
                      AND NOT EXISTS (SELECT 1 FROM {s}.tasks o
                                       WHERE o.item_id = c.item_id AND o.assignee = me
                                       OFFSET 0)
                      AND NOT EXISTS (SELECT 1 FROM {s}.task_skips k
                                       WHERE k.item_id = c.item_id AND k.user_id = me
                                       OFFSET 0)
                    ORDER BY c.created_at, c.seq LIMIT 1 FOR UPDATE SKIP LOCKED)
    RETURNING t.id, t.item_id INTO t_id, t_item;
  END IF;
  IF t_id IS NULL AND auto THEN
    UPDATE {s}.tasks t SET state = 'leased', assignee = me, leased_at = now(),
           updated_at = now(), lease_expires_at = now() + make_interval(secs => lease)
     WHERE t.id = (SELECT c.id FROM {s}.tasks c
                    WHERE c.state = 'leased' AND c.origin = 'auto'
                      AND c.lease_expires_at <= now()
                      AND NOT EXISTS (SELECT 1 FROM {s}.tasks o
                                       WHERE o.item_id = c.item_id AND o.assignee = me
                                         AND o.id <> c.id OFFSET 0)
                      AND NOT EXISTS (SELECT 1 FROM {s}.task_skips k
                                       WHERE k.item_id = c.item_id AND k.user_id = me
                                       OFFSET 0)
                    ORDER BY c.lease_expires_at LIMIT 1 FOR UPDATE SKIP LOCKED)
    RETURNING t.id, t.item_id INTO t_id, t_item;
  END IF;
  IF t_id IS NOT NULL THEN
    task_id := t_id; item_id := t_item; RETURN NEXT;
  END IF;
  RETURN;
END
$f$;
"""

# Project step 5: the policies that look at other tables do it through small SECURITY DEFINER
# functions. Written as EXISTS subqueries, each such policy pulled the policies of the tables it
# named into every plan (items -> tasks -> annotations -> reviews ...): an annotator's task
# fetch carried a tree of sub-plans that were never run but were built at every execution
# (about 1 ms of each statement). A function call is one node, and it only runs when the role
# test before it holds. Each function answers for lv_user() only, reads as lv_owner (who may
# only SELECT those rows), and is granted to the project role alone.
POLICY_FUNCTIONS_STEP = r"""
CREATE POLICY annotations_owner ON {s}.annotations FOR SELECT TO lv_owner USING (true);
CREATE POLICY reviews_owner ON {s}.reviews FOR SELECT TO lv_owner USING (true);

CREATE FUNCTION {s}.annotator_holds_item(p_item uuid) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$
BEGIN
  RETURN EXISTS (SELECT 1 FROM {s}.tasks t
                  WHERE t.item_id = p_item AND t.assignee = {s}.lv_user());
END
$f$;
CREATE FUNCTION {s}.reviewer_holds_annotation(p_annotation uuid, p_pending_only boolean)
RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$
BEGIN
  RETURN EXISTS (SELECT 1 FROM {s}.reviews v
                  WHERE v.annotation_id = p_annotation AND v.reviewer = {s}.lv_user()
                    AND (NOT p_pending_only OR v.state = 'pending'));
END
$f$;
CREATE FUNCTION {s}.reviewer_holds_item(p_item uuid) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$
BEGIN
  RETURN EXISTS (SELECT 1 FROM {s}.annotations a JOIN {s}.reviews v ON v.annotation_id = a.id
                  WHERE a.item_id = p_item AND v.reviewer = {s}.lv_user());
END
$f$;
CREATE FUNCTION {s}.reviewer_holds_task(p_task uuid) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$
BEGIN
  RETURN EXISTS (SELECT 1 FROM {s}.annotations a JOIN {s}.reviews v ON v.annotation_id = a.id
                  WHERE a.task_id = p_task AND v.reviewer = {s}.lv_user());
END
$f$;
ALTER FUNCTION {s}.annotator_holds_item(uuid) OWNER TO lv_owner;
ALTER FUNCTION {s}.reviewer_holds_annotation(uuid, boolean) OWNER TO lv_owner;
ALTER FUNCTION {s}.reviewer_holds_item(uuid) OWNER TO lv_owner;
ALTER FUNCTION {s}.reviewer_holds_task(uuid) OWNER TO lv_owner;
REVOKE ALL ON FUNCTION {s}.annotator_holds_item(uuid), {s}.reviewer_holds_annotation(uuid, boolean),
  {s}.reviewer_holds_item(uuid), {s}.reviewer_holds_task(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION {s}.annotator_holds_item(uuid),
  {s}.reviewer_holds_annotation(uuid, boolean), {s}.reviewer_holds_item(uuid),
  {s}.reviewer_holds_task(uuid) TO {r};

ALTER POLICY items_annotator ON {s}.items
  USING ((SELECT {s}.lv_role()) = 'annotator' AND {s}.annotator_holds_item(items.id));
ALTER POLICY items_reviewer ON {s}.items
  USING ((SELECT {s}.lv_role()) = 'reviewer' AND {s}.reviewer_holds_item(items.id));
ALTER POLICY tasks_reviewer ON {s}.tasks
  USING ((SELECT {s}.lv_role()) = 'reviewer' AND {s}.reviewer_holds_task(tasks.id));
ALTER POLICY tasks_reviewer_read ON {s}.tasks
  USING ((SELECT {s}.lv_role()) = 'reviewer' AND {s}.reviewer_holds_task(tasks.id));
ALTER POLICY annotations_review ON {s}.annotations
  USING ((SELECT {s}.lv_role()) = 'reviewer'
         AND {s}.reviewer_holds_annotation(annotations.id, false));
ALTER POLICY annotations_decide ON {s}.annotations
  USING ((SELECT {s}.lv_role()) = 'reviewer'
         AND {s}.reviewer_holds_annotation(annotations.id, true));
"""

# Project step 6: what a role may write may not widen what it may read or decide. Row-level
# security says which rows a role touches, not which columns; these triggers (SECURITY INVOKER:
# they see what the writer sees) keep the links that grant access fixed for everyone but the
# platform's own context, and keep export approval a second person's decision. They run AFTER
# the row is checked, so what row-level security refuses is still refused by it, first.
INTEGRITY_STEP = r"""
CREATE FUNCTION {s}.guard_links() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $f$
DECLARE
  who text := {s}.lv_role();
  me uuid := {s}.lv_user();
BEGIN
  IF who = 'system' THEN
    RETURN NEW;
  END IF;
  IF TG_TABLE_NAME = 'tasks' THEN
    -- tasks are created by imports and assignments, which run as the platform
    IF TG_OP = 'INSERT' OR NEW.id <> OLD.id OR NEW.item_id <> OLD.item_id
       OR NEW.slot <> OLD.slot THEN
      RAISE EXCEPTION 'a task''s item is fixed' USING ERRCODE = '42501';
    END IF;
  ELSIF TG_TABLE_NAME = 'annotations' THEN
    IF TG_OP = 'INSERT' THEN
      IF NOT EXISTS (SELECT 1 FROM {s}.tasks t WHERE t.id = NEW.task_id
                       AND t.item_id = NEW.item_id AND t.assignee = me) THEN
        RAISE EXCEPTION 'an annotation answers one of your own tasks' USING ERRCODE = '42501';
      END IF;
    ELSIF NEW.id <> OLD.id OR NEW.task_id <> OLD.task_id OR NEW.item_id <> OLD.item_id
          OR NEW.annotator <> OLD.annotator THEN
      RAISE EXCEPTION 'an annotation''s task is fixed' USING ERRCODE = '42501';
    END IF;
  ELSIF TG_TABLE_NAME = 'reviews' THEN
    IF TG_OP = 'INSERT' THEN
      IF NOT EXISTS (SELECT 1 FROM {s}.annotations a WHERE a.id = NEW.annotation_id
                       AND a.annotator = me AND NEW.annotator = me) THEN
        RAISE EXCEPTION 'a review is of your own annotation' USING ERRCODE = '42501';
      END IF;
    ELSIF NEW.id <> OLD.id OR NEW.annotation_id <> OLD.annotation_id
          OR NEW.annotator <> OLD.annotator OR NEW.reviewer <> OLD.reviewer THEN
      RAISE EXCEPTION 'a review''s annotation and reviewer are fixed' USING ERRCODE = '42501';
    END IF;
  ELSIF TG_TABLE_NAME = 'exports' THEN
    IF NEW.requested_by <> OLD.requested_by OR NEW.format <> OLD.format
       OR NEW.only_accepted <> OLD.only_accepted THEN
      RAISE EXCEPTION 'an export''s request is fixed' USING ERRCODE = '42501';
    END IF;
    -- approving is recorded as the approver's own act, by someone other than the requester
    IF (NEW.approved_by IS DISTINCT FROM OLD.approved_by AND NEW.approved_by IS DISTINCT FROM me)
       OR (NEW.state = 'approved' AND OLD.state <> 'approved'
           AND (NEW.approved_by IS DISTINCT FROM me OR me = OLD.requested_by)) THEN
      RAISE EXCEPTION 'a second person approves an export' USING ERRCODE = '42501';
    END IF;
  ELSIF TG_TABLE_NAME = 'settings' THEN
    IF OLD.export_requires_approval AND NOT NEW.export_requires_approval THEN
      RAISE EXCEPTION 'only an administrator turns off two-person approval of exports'
        USING ERRCODE = '42501';
    END IF;
  END IF;
  RETURN NEW;
END
$f$;
ALTER FUNCTION {s}.guard_links() OWNER TO lv_owner;
REVOKE ALL ON FUNCTION {s}.guard_links() FROM PUBLIC;
-- the function runs only when it has something to check: inserts outside the platform's
-- context, updates that touch a link (bulk imports and the annotator loop's ordinary
-- updates never call it)
CREATE TRIGGER guard_links_insert AFTER INSERT ON {s}.tasks FOR EACH ROW
  WHEN ({s}.lv_role() IS DISTINCT FROM 'system') EXECUTE FUNCTION {s}.guard_links();
CREATE TRIGGER guard_links_update AFTER UPDATE ON {s}.tasks FOR EACH ROW
  WHEN (NEW.id <> OLD.id OR NEW.item_id <> OLD.item_id OR NEW.slot <> OLD.slot)
  EXECUTE FUNCTION {s}.guard_links();
CREATE TRIGGER guard_links_insert AFTER INSERT ON {s}.annotations FOR EACH ROW
  WHEN ({s}.lv_role() IS DISTINCT FROM 'system') EXECUTE FUNCTION {s}.guard_links();
CREATE TRIGGER guard_links_update AFTER UPDATE ON {s}.annotations FOR EACH ROW
  WHEN (NEW.id <> OLD.id OR NEW.task_id <> OLD.task_id OR NEW.item_id <> OLD.item_id
        OR NEW.annotator <> OLD.annotator)
  EXECUTE FUNCTION {s}.guard_links();
CREATE TRIGGER guard_links_insert AFTER INSERT ON {s}.reviews FOR EACH ROW
  WHEN ({s}.lv_role() IS DISTINCT FROM 'system') EXECUTE FUNCTION {s}.guard_links();
CREATE TRIGGER guard_links_update AFTER UPDATE ON {s}.reviews FOR EACH ROW
  WHEN (NEW.id <> OLD.id OR NEW.annotation_id <> OLD.annotation_id
        OR NEW.annotator <> OLD.annotator OR NEW.reviewer <> OLD.reviewer)
  EXECUTE FUNCTION {s}.guard_links();
CREATE TRIGGER guard_links AFTER UPDATE ON {s}.exports
  FOR EACH ROW EXECUTE FUNCTION {s}.guard_links();
CREATE TRIGGER guard_links AFTER UPDATE ON {s}.settings
  FOR EACH ROW EXECUTE FUNCTION {s}.guard_links();

-- an annotator re-routes only a review still open to them (a revision after a rejection)
ALTER POLICY reviews_reroute ON {s}.reviews
  USING ((SELECT {s}.lv_role()) = 'annotator' AND annotator = (SELECT {s}.lv_user())
         AND state IN ('pending', 'rejected'));

CREATE OR REPLACE FUNCTION {s}.refresh_statistics() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$
BEGIN
  IF {s}.lv_role() IS DISTINCT FROM 'system' THEN
    RAISE EXCEPTION 'statistics are refreshed by the platform' USING ERRCODE = '42501';
  END IF;
  ANALYZE {s}.items, {s}.tasks;
END
$f$;
"""

# Step 7: an import's report of rejected rows is sealed like every other payload. Its reasons
# name archive entries and files, and a file name can be personal data (a scan named after its
# patient). The plaintext column goes with its contents (nothing ever read it back). A dropped
# column's values stay in the table's pages, so the table is rewritten without them first
# (changing the column's type rewrites it); the WAL and backups still hold them.
IMPORT_REPORT_STEP = r"""
ALTER TABLE {s}.imports ALTER COLUMN report DROP NOT NULL, ALTER COLUMN report DROP DEFAULT,
  ALTER COLUMN report TYPE text USING NULL;
ALTER TABLE {s}.imports DROP COLUMN report;
ALTER TABLE {s}.imports ADD COLUMN report bytea;
-- the platform re-seals it after a key rotation, as it does every sealed column
CREATE POLICY imports_reseal ON {s}.imports FOR UPDATE TO {r}
  USING ((SELECT {s}.lv_role()) = 'system') WITH CHECK ((SELECT {s}.lv_role()) = 'system');
"""

# Step 8: a built bundle is kept for a limited time. A ready export records when its bundle
# expires; the platform's sweep then marks it expired and deletes the bundle (and deletes the
# bundles that downloads, failures and earlier expiries left behind, clearing blob_id).
EXPORT_EXPIRY_STEP = r"""
ALTER TABLE {s}.exports ADD COLUMN expires_at timestamptz;
CREATE INDEX exports_expiry_idx ON {s}.exports (expires_at) WHERE state = 'ready';
"""

# Step 9: what the platform records about an export's bundle (its blob, manifest, counts, how
# long it is kept) is the platform's alone, and a member writes an export only as the routes do:
# a new request (pending, or approved at once where the project does not require approval), a
# decision on a pending request, a link for a ready export of their own and its download (or its
# failure). (A bundle is bound to its export by encryption, so a moved blob_id never decrypts;
# this keeps the two-person rule, retention and the record of what was built out of a member's
# reach too, and keeps a member from pointing a row at another export's bundle for the sweep.)
# Links last at most 10 minutes (export.service.LINK_MINUTES) and never past the bundle.
EXPORT_GUARD_STEP = r"""
CREATE FUNCTION {s}.guard_export_record() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $f$
DECLARE
  me uuid := {s}.lv_user();
BEGIN
  IF {s}.lv_role() = 'system' THEN
    RETURN NEW;
  END IF;
  IF TG_OP = 'INSERT' THEN
    IF NOT (NEW.state = 'pending_approval'
            OR (NEW.state = 'approved'
                AND NOT coalesce((SELECT s.export_requires_approval FROM {s}.settings s), true)))
       OR NEW.approved_by IS NOT NULL OR NEW.blob_id IS NOT NULL OR NEW.manifest IS NOT NULL
       OR NEW.item_count IS NOT NULL OR NEW.download_token_hash IS NOT NULL
       OR NEW.download_expires_at IS NOT NULL OR NEW.downloaded_at IS NOT NULL
       OR NEW.error IS NOT NULL OR NEW.expires_at IS NOT NULL THEN
      RAISE EXCEPTION 'a new export is a request, nothing more' USING ERRCODE = '42501';
    END IF;
    RETURN NEW;
  END IF;
  IF NEW.blob_id IS DISTINCT FROM OLD.blob_id OR NEW.manifest IS DISTINCT FROM OLD.manifest
     OR NEW.item_count IS DISTINCT FROM OLD.item_count
     OR NEW.expires_at IS DISTINCT FROM OLD.expires_at
     OR NEW.created_at IS DISTINCT FROM OLD.created_at THEN
    RAISE EXCEPTION 'an export''s bundle is recorded by the platform' USING ERRCODE = '42501';
  END IF;
  IF NEW.state IS DISTINCT FROM OLD.state AND NOT (
       (OLD.state = 'pending_approval' AND NEW.state IN ('approved', 'rejected'))
       OR (OLD.state = 'ready' AND NEW.state IN ('downloaded', 'failed')
           AND coalesce(OLD.requested_by = me, false))) THEN
    RAISE EXCEPTION 'an export moves only by a decision or a download' USING ERRCODE = '42501';
  END IF;
  IF NEW.downloaded_at IS DISTINCT FROM OLD.downloaded_at
     AND NOT coalesce(NEW.state = 'downloaded' AND OLD.state = 'ready'
                      AND NEW.downloaded_at = now(), false) THEN
    RAISE EXCEPTION 'an export is downloaded when it is' USING ERRCODE = '42501';
  END IF;
  IF NEW.download_token_hash IS NOT NULL
     AND NEW.download_token_hash IS DISTINCT FROM OLD.download_token_hash
     AND (OLD.state <> 'ready' OR NEW.state <> 'ready' OR OLD.requested_by IS DISTINCT FROM me)
  THEN
    RAISE EXCEPTION 'only the requester of a ready export has a download link'
      USING ERRCODE = '42501';
  END IF;
  IF NEW.download_expires_at IS NOT NULL
     AND NEW.download_expires_at IS DISTINCT FROM OLD.download_expires_at
     AND (NEW.download_token_hash IS NOT DISTINCT FROM OLD.download_token_hash
          OR NEW.download_expires_at > least(now() + interval '10 minutes', NEW.expires_at)) THEN
    RAISE EXCEPTION 'a download link lasts 10 minutes at most' USING ERRCODE = '42501';
  END IF;
  RETURN NEW;
END
$f$;
ALTER FUNCTION {s}.guard_export_record() OWNER TO lv_owner;
REVOKE ALL ON FUNCTION {s}.guard_export_record() FROM PUBLIC;
CREATE TRIGGER guard_export_record AFTER INSERT OR UPDATE ON {s}.exports
  FOR EACH ROW EXECUTE FUNCTION {s}.guard_export_record();
"""
