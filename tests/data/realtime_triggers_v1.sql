-- supabase-push: realtime triggers for positions, trades and portfolio snapshots.
--
-- Run it with `supabase-push apply`, paste it into the Supabase SQL editor, or
-- `psql -v ON_ERROR_STOP=1 -f sql/realtime_triggers.sql`. It is idempotent and runs as
-- one transaction: applying it twice changes nothing, a failure changes nothing.
--
-- What it installs (schema version 1):
--   * publication supabase_realtime (created if absent) with every routed table;
--   * one AFTER ROW trigger per routed table that appends the change to a change log;
--   * at commit, once per transaction, a commit-ordered cursor stamp, then a broadcast of
--     each change: realtime.send() where the `realtime` schema has it (hosted Supabase, or
--     the local server), else pg_notify() on a channel named after the topic (without the
--     rows: any role may LISTEN, so listeners read the change by cursor with their rights);
--   * public.supabase_push_changes(), a STABLE function that reads the change log by
--     cursor (SQL or PostgREST RPC) so a subscriber that was away loses nothing.
--
-- Default routes: positions -> position-updates (position_change_trigger),
-- trades -> trade-updates (trade_executed_trigger),
-- portfolio_snapshots -> portfolio-updates (portfolio_update_trigger).
-- The CLI passes other routes and settings through the session settings read at the end.

BEGIN;

-- Two concurrent applies (or an apply and an uninstall) run one after the other.
SELECT pg_advisory_xact_lock(7218311412069051321);

-- A database installed by a newer supabase-push (a later schema version) is left as it is:
-- this script would put version 1's functions over the newer ones.
DO $$
DECLARE
    v_version integer;
BEGIN
    IF pg_catalog.to_regclass('supabase_push.installation') IS NOT NULL THEN
        SELECT schema_version INTO v_version FROM supabase_push.installation;  -- planned only once it exists
        IF v_version > 1 THEN
            RAISE EXCEPTION 'supabase_push: this database has schema version %, newer than this script (version 1)',
                v_version
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'Upgrade supabase-push (pip install -U supabase-push) and apply its SQL; a downgrade is not supported.';
        END IF;
    END IF;
END
$$;

CREATE SCHEMA IF NOT EXISTS supabase_push;
COMMENT ON SCHEMA supabase_push IS 'supabase-push: change log and triggers (see sql/realtime_triggers.sql)';

CREATE TABLE IF NOT EXISTS supabase_push.installation (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    schema_version integer NOT NULL,
    fingerprint text NOT NULL,
    broadcast_mode text NOT NULL CHECK (broadcast_mode IN ('auto', 'realtime', 'notify', 'both', 'none')),
    private_broadcast boolean NOT NULL,
    created_publication boolean NOT NULL DEFAULT false,
    installed_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- The push paths mode `auto` resolved to when apply ran: `verify` reports it when they change
-- (the realtime schema appeared or went), since LISTEN clients then hear nothing. A table of its
-- own, not a column of installation: every tracked commit reads installation (publish_v1), so
-- adding a column there during an upgrade would deadlock against the writers.
CREATE TABLE IF NOT EXISTS supabase_push.push_path (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    applied text[] NOT NULL
);

-- Counts broadcasts that failed. The change is still in the log, so subscribers catch up,
-- but nobody should have to guess why pushes stopped arriving.
CREATE TABLE IF NOT EXISTS supabase_push.health (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    broadcast_failures bigint NOT NULL DEFAULT 0,
    last_failure text,
    last_failure_at timestamptz
);
INSERT INTO supabase_push.health DEFAULT VALUES ON CONFLICT DO NOTHING;

CREATE TABLE IF NOT EXISTS supabase_push.routes (
    schema_name text NOT NULL,
    table_name text NOT NULL,
    topic text NOT NULL,
    trigger_name text NOT NULL,
    added_to_publication boolean NOT NULL,
    PRIMARY KEY (schema_name, table_name)
);

-- One row per change. `txid` ties it to its transaction; the cursor position is the
-- transaction's commit sequence (change_txn.seq) then `id`.
CREATE TABLE IF NOT EXISTS supabase_push.change_log (
    id bigint GENERATED ALWAYS AS IDENTITY,
    txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    topic text NOT NULL,
    schema_name text NOT NULL,
    table_name text NOT NULL,
    op text NOT NULL,
    record jsonb,
    old_record jsonb
);
-- Only where it is missing: CREATE INDEX takes a SHARE lock on the change log before it looks
-- for the index, so a re-apply would hold up every tracked write until it commits, and deadlock
-- with the writers when it must also create a trigger on a routed table (an upgrade under load).
DO $$
BEGIN
    IF pg_catalog.to_regclass('supabase_push.change_log_txid_id_idx') IS NULL THEN
        CREATE INDEX change_log_txid_id_idx ON supabase_push.change_log (txid, id);
    END IF;
END
$$;

-- One row per writing transaction, stamped with a commit-ordered sequence number at
-- commit time (see stamp_commit_v1). Invisible until its transaction commits.
CREATE TABLE IF NOT EXISTS supabase_push.change_txn (
    txid xid8 PRIMARY KEY DEFAULT pg_current_xact_id(),
    seq bigint UNIQUE,
    committed_at timestamptz
);
CREATE SEQUENCE IF NOT EXISTS supabase_push.commit_seq;

-- How far `prune` has deleted the change log: every change up to (pruned_seq, pruned_id) is
-- gone. A reader whose cursor is behind it gets a GAP row first (supabase_push_changes).
CREATE TABLE IF NOT EXISTS supabase_push.retention (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    pruned_seq bigint NOT NULL DEFAULT 0,
    pruned_id bigint NOT NULL DEFAULT 0,
    pruned_at timestamptz
);
INSERT INTO supabase_push.retention DEFAULT VALUES ON CONFLICT DO NOTHING;

-- The cursor of each topic's last pushed change: what every push names as "prev".
CREATE TABLE IF NOT EXISTS supabase_push.topic_heads (
    topic text PRIMARY KEY,
    head text NOT NULL
);

-- AFTER ROW trigger of every routed table: append the change. TG_ARGV[0] is the topic.
CREATE OR REPLACE FUNCTION supabase_push.capture_change_v1()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    v_first boolean;
    v_seq bigint;
    v_id bigint;
BEGIN
    INSERT INTO supabase_push.change_txn DEFAULT VALUES ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS v_first = ROW_COUNT;
    INSERT INTO supabase_push.change_log (topic, schema_name, table_name, op, record, old_record)
    VALUES (
        TG_ARGV[0], TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP,
        CASE WHEN TG_OP <> 'DELETE' THEN pg_catalog.to_jsonb(NEW) END,
        CASE WHEN TG_OP <> 'INSERT' THEN pg_catalog.to_jsonb(OLD) END
    )
    RETURNING id INTO v_id;
    IF NOT v_first THEN
        -- Stamped already (SET CONSTRAINTS ALL IMMEDIATE ran the commit stamp early): this
        -- change is read by cursor, not pushed. This transaction holds the commit-order lock,
        -- so moving its topic's head keeps every later push's "prev" exact.
        SELECT seq INTO v_seq FROM supabase_push.change_txn WHERE txid = pg_catalog.pg_current_xact_id();
        IF v_seq IS NOT NULL THEN
            INSERT INTO supabase_push.topic_heads (topic, head) VALUES (TG_ARGV[0], v_seq::text || ':' || v_id::text)
            ON CONFLICT (topic) DO UPDATE SET head = excluded.head;
        END IF;
    END IF;
    RETURN NULL;
END
$$;

-- The event envelope, the same on every transport (docs/architecture.md, "The event").
CREATE OR REPLACE FUNCTION supabase_push.envelope_v1(
    change supabase_push.change_log, seq bigint, committed_at timestamptz)
RETURNS jsonb
LANGUAGE sql
IMMUTABLE
SET search_path = ''
AS $$
    SELECT pg_catalog.jsonb_build_object(
        'id', change.id,
        'cursor', seq::text || ':' || change.id::text,
        'topic', change.topic,
        'schema', change.schema_name,
        'table', change.table_name,
        'op', change.op,
        'record', change.record,
        'old_record', change.old_record,
        'commit_ts', committed_at
    )
$$;

-- The push paths a broadcast mode takes on this database: 'auto' means realtime.send()
-- where the realtime schema has it (hosted Supabase, the local server), else NOTIFY.
CREATE OR REPLACE FUNCTION supabase_push.broadcast_paths_v1(p_mode text)
RETURNS text[]
LANGUAGE sql
STABLE
SET search_path = ''
AS $$
    SELECT CASE p_mode
        WHEN 'realtime' THEN ARRAY['realtime']
        WHEN 'notify' THEN ARRAY['notify']
        WHEN 'both' THEN ARRAY['realtime', 'notify']
        WHEN 'none' THEN ARRAY[]::text[]
        ELSE CASE WHEN pg_catalog.to_regprocedure('realtime.send(jsonb,text,text,boolean)') IS NOT NULL
                  THEN ARRAY['realtime'] ELSE ARRAY['notify'] END
    END
$$;

-- Sends every change of one transaction, in cursor order. Runs once per transaction at
-- commit, under the commit-order lock, so pushes leave in the same order as the cursor.
CREATE OR REPLACE FUNCTION supabase_push.publish_v1(p_txid xid8, p_seq bigint, p_committed_at timestamptz)
RETURNS void
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    v_mode text;
    v_private boolean;
    v_paths text[];
    v_realtime boolean;
    v_notify boolean;
    v_change supabase_push.change_log;
    v_envelope jsonb;
    v_text text;
    v_heads jsonb;
BEGIN
    SELECT broadcast_mode, private_broadcast INTO v_mode, v_private FROM supabase_push.installation;
    v_paths := supabase_push.broadcast_paths_v1(v_mode);
    v_realtime := 'realtime' = ANY (v_paths);
    v_notify := 'notify' = ANY (v_paths);
    -- Each push carries "prev": for every topic, the cursor of its last change before this
    -- one. A subscriber to topics S whose last change is the latest of those cursors over S
    -- takes the push as it comes; any other knows it missed something and reads by cursor.
    -- The heads move under the commit-order lock, for every transaction, pushed or not, so
    -- they are exact: a failed or skipped push can never be vouched for by a later one.
    IF v_realtime OR v_notify THEN
        SELECT coalesce(pg_catalog.jsonb_object_agg(topic, head), '{}') INTO v_heads FROM supabase_push.topic_heads;
    END IF;
    INSERT INTO supabase_push.topic_heads (topic, head)
    SELECT topic, p_seq::text || ':' || pg_catalog.max(id)::text
    FROM supabase_push.change_log WHERE txid = p_txid GROUP BY topic
    ON CONFLICT (topic) DO UPDATE SET head = excluded.head;
    IF NOT (v_realtime OR v_notify) THEN
        RETURN;
    END IF;
    -- One subtransaction for the whole batch: a failure never aborts the user's write.
    BEGIN
        FOR v_change IN
            SELECT * FROM supabase_push.change_log WHERE txid = p_txid ORDER BY id
        LOOP
            v_envelope := supabase_push.envelope_v1(v_change, p_seq, p_committed_at)
                          || pg_catalog.jsonb_build_object('prev', v_heads);
            v_heads := v_heads || pg_catalog.jsonb_build_object(v_change.topic, p_seq::text || ':' || v_change.id::text);
            IF v_realtime THEN
                PERFORM realtime.send(v_envelope, v_change.op, v_change.topic, v_private);
            END IF;
            IF v_notify THEN
                -- LISTEN has no privilege check (any role may listen on any channel), so a
                -- NOTIFY carries no row, only where to read it: the listener reads the change
                -- by its cursor with its own rights ("truncated": the push has no rows).
                v_text := (v_envelope - 'record' - 'old_record' || '{"truncated": true}'::jsonb)::text;
                PERFORM pg_catalog.pg_notify(v_change.topic, v_text);
            END IF;
        END LOOP;
    EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'supabase_push: broadcast of transaction % failed (subscribers will catch up from the change log): %',
            p_txid, SQLERRM;
        UPDATE supabase_push.health
        SET broadcast_failures = broadcast_failures + 1,
            last_failure = SQLERRM,
            last_failure_at = pg_catalog.now();
    END;
END
$$;

-- Deferred constraint trigger on change_txn: fires once per transaction, at commit.
-- The advisory lock is held until the commit is visible, so a transaction that draws
-- seq N+1 becomes visible only after the one holding N (research: cursor.md, C2).
CREATE OR REPLACE FUNCTION supabase_push.stamp_commit_v1()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    v_seq bigint;
    v_committed_at timestamptz;
BEGIN
    PERFORM pg_catalog.pg_advisory_xact_lock(7218311412069051322);
    v_seq := pg_catalog.nextval('supabase_push.commit_seq');
    v_committed_at := pg_catalog.clock_timestamp();
    UPDATE supabase_push.change_txn SET seq = v_seq, committed_at = v_committed_at
    WHERE txid = NEW.txid;
    PERFORM supabase_push.publish_v1(NEW.txid, v_seq, v_committed_at);
    RETURN NULL;
END
$$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_trigger
                   WHERE tgrelid = 'supabase_push.change_txn'::regclass AND tgname = 'stamp_commit') THEN
        CREATE CONSTRAINT TRIGGER stamp_commit
            AFTER INSERT ON supabase_push.change_txn
            DEFERRABLE INITIALLY DEFERRED
            FOR EACH ROW EXECUTE FUNCTION supabase_push.stamp_commit_v1();
    END IF;
END
$$;

-- Reads changes after a cursor (after_seq, after_id), in commit order. Call it from SQL or
-- through PostgREST: POST /rest/v1/rpc/supabase_push_changes. Runs with the caller's
-- rights: only roles granted SELECT on the change log can read it. If `prune` deleted
-- changes after the cursor, the first row is op 'GAP' at the pruned-through cursor, so a
-- reader never skips lost changes silently (record: {"after": ..., "pruned_through": ...}).
CREATE OR REPLACE FUNCTION public.supabase_push_changes(
    after_seq bigint DEFAULT 0,
    after_id bigint DEFAULT 0,
    max_rows integer DEFAULT 500,
    topics text[] DEFAULT NULL)
RETURNS TABLE (
    seq bigint, id bigint, topic text, schema_name text, table_name text, op text,
    record jsonb, old_record jsonb, committed_at timestamptz)
LANGUAGE sql
STABLE
SET search_path = ''
AS $$
    SELECT r.pruned_seq, r.pruned_id, '*', '', '', 'GAP',
           pg_catalog.jsonb_build_object('after', after_seq::text || ':' || after_id::text,
                                         'pruned_through', r.pruned_seq::text || ':' || r.pruned_id::text),
           NULL::jsonb, r.pruned_at
    FROM supabase_push.retention r
    WHERE (r.pruned_seq, r.pruned_id) > (after_seq, after_id)
    UNION ALL
    (SELECT t.seq, l.id, l.topic, l.schema_name, l.table_name, l.op, l.record, l.old_record,
            t.committed_at
     FROM supabase_push.change_txn t
     JOIN supabase_push.change_log l ON l.txid = t.txid
     WHERE t.seq >= after_seq
       AND (t.seq, l.id) > (after_seq, after_id)
       AND (topics IS NULL OR l.topic = ANY (topics))
     ORDER BY t.seq, l.id
     LIMIT max_rows)
    ORDER BY 1, 2
    LIMIT max_rows
$$;
COMMENT ON FUNCTION public.supabase_push_changes(bigint, bigint, integer, text[]) IS
    'supabase-push: changes after the cursor (after_seq, after_id), in commit order';

-- The cursor of the newest change (or the retention horizon, if newer; 0:0 for an empty
-- log): where a reader that wants only what comes next starts. Same rights as above.
CREATE OR REPLACE FUNCTION public.supabase_push_head()
RETURNS TABLE (seq bigint, id bigint)
LANGUAGE sql
STABLE
SET search_path = ''
AS $$
    SELECT h.seq, h.id FROM (
        (SELECT t.seq, (SELECT pg_catalog.max(l.id) FROM supabase_push.change_log l WHERE l.txid = t.txid) AS id
         FROM supabase_push.change_txn t
         WHERE t.seq IS NOT NULL
         ORDER BY t.seq DESC
         LIMIT 1)
        UNION ALL
        SELECT r.pruned_seq, r.pruned_id FROM supabase_push.retention r
        UNION ALL
        SELECT 0, 0
    ) h
    WHERE h.id IS NOT NULL
    ORDER BY 1 DESC, 2 DESC
    LIMIT 1
$$;
COMMENT ON FUNCTION public.supabase_push_head() IS
    'supabase-push: the cursor of the newest change in the log';

-- On Supabase the service role reads the change log (PostgREST polling); anon and
-- authenticated get nothing unless you grant it.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'service_role') THEN
        GRANT USAGE ON SCHEMA supabase_push TO service_role;
        GRANT SELECT ON supabase_push.change_log, supabase_push.change_txn, supabase_push.retention TO service_role;
    END IF;
END
$$;

-- Deletes the changes committed more than p_keep ago and moves the retention horizon, in
-- one transaction: a reader sees the rows gone and the horizon moved together.
CREATE OR REPLACE FUNCTION supabase_push.prune_v1(p_keep interval)
RETURNS TABLE (deleted bigint, pruned_through text)
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    v_seq bigint;
    v_id bigint;
    v_deleted bigint := 0;
BEGIN
    SELECT pg_catalog.max(t.seq) INTO v_seq
    FROM supabase_push.change_txn t
    WHERE t.seq IS NOT NULL AND t.committed_at < pg_catalog.now() - p_keep;
    IF v_seq IS NOT NULL THEN
        SELECT coalesce(pg_catalog.max(l.id), 0) INTO v_id
        FROM supabase_push.change_txn t JOIN supabase_push.change_log l ON l.txid = t.txid
        WHERE t.seq = v_seq;
        UPDATE supabase_push.retention r
        SET pruned_seq = v_seq, pruned_id = v_id, pruned_at = pg_catalog.now()
        WHERE (r.pruned_seq, r.pruned_id) < (v_seq, v_id);
        WITH gone AS (DELETE FROM supabase_push.change_txn t WHERE t.seq <= v_seq RETURNING t.txid)
        DELETE FROM supabase_push.change_log l USING gone WHERE l.txid = gone.txid;
        GET DIAGNOSTICS v_deleted = ROW_COUNT;
    END IF;
    RETURN QUERY
    SELECT v_deleted, r.pruned_seq::text || ':' || r.pruned_id::text FROM supabase_push.retention r;
END
$$;

-- A hash of every installed function and trigger definition: `verify` compares it with
-- the one recorded at install time to detect hand edits (drift).
CREATE OR REPLACE FUNCTION supabase_push.fingerprint_v1()
RETURNS text
LANGUAGE sql
STABLE
SET search_path = ''
AS $$
    SELECT pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(
        pg_catalog.string_agg(def, E'\n' ORDER BY def), 'UTF8')), 'hex')
    FROM (
        SELECT pg_catalog.pg_get_functiondef(p.oid) AS def
        FROM pg_catalog.pg_proc p
        WHERE p.pronamespace = 'supabase_push'::regnamespace
           OR p.oid = pg_catalog.to_regprocedure('public.supabase_push_changes(bigint,bigint,integer,text[])')
           OR p.oid = pg_catalog.to_regprocedure('public.supabase_push_head()')
        UNION ALL
        SELECT pg_catalog.pg_get_triggerdef(t.oid) || ' ' || t.tgenabled::text
        FROM pg_catalog.pg_trigger t
        JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        JOIN supabase_push.routes r
          ON r.schema_name = n.nspname AND r.table_name = c.relname
         AND t.tgname IN (r.trigger_name, 'supabase_push_truncate')
    ) AS defs
$$;

-- Removes one route: its trigger, and its table from the publication if the install put
-- it there. Used by install_v1 (routes left out) and by sql/uninstall.sql.
CREATE OR REPLACE FUNCTION supabase_push.drop_route_v1(p_schema text, p_table text)
RETURNS void
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    v_route supabase_push.routes;
    v_relid oid;
BEGIN
    SELECT * INTO v_route FROM supabase_push.routes WHERE schema_name = p_schema AND table_name = p_table;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    v_relid := pg_catalog.to_regclass(pg_catalog.format('%I.%I', p_schema, p_table));
    IF v_relid IS NOT NULL THEN
        EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS %I ON %I.%I', v_route.trigger_name, p_schema, p_table);
        EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS supabase_push_truncate ON %I.%I', p_schema, p_table);
        IF v_route.added_to_publication AND EXISTS (
            SELECT FROM pg_catalog.pg_publication_rel pr
            JOIN pg_catalog.pg_publication p ON p.oid = pr.prpubid
            WHERE p.pubname = 'supabase_realtime' AND pr.prrelid = v_relid
        ) THEN
            EXECUTE pg_catalog.format('ALTER PUBLICATION supabase_realtime DROP TABLE %I.%I', p_schema, p_table);
        END IF;
    END IF;
    DELETE FROM supabase_push.routes WHERE schema_name = p_schema AND table_name = p_table;
END
$$;

-- Installs the routes (table -> topic) and records the installation. Declarative: routes
-- not in p_routes are removed, tables it added to the publication are taken out again.
CREATE OR REPLACE FUNCTION supabase_push.install_v1(
    p_routes jsonb, p_broadcast_mode text, p_private_broadcast boolean)
RETURNS void
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    v_route record;
    v_kind record;
    v_ident text[];
    v_schema text;
    v_table text;
    v_relid oid;
    v_trigger text;
    v_old_trigger text;
    v_added boolean;
    v_created_publication boolean := false;
    v_all_tables boolean;
    v_wanted text[] := '{}';
BEGIN
    IF pg_catalog.jsonb_typeof(p_routes) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'supabase_push: routes must be a JSON array, got %', p_routes;
    END IF;
    IF p_broadcast_mode IN ('realtime', 'both')
       AND pg_catalog.to_regprocedure('realtime.send(jsonb,text,text,boolean)') IS NULL THEN
        RAISE EXCEPTION 'supabase_push: broadcast mode % needs realtime.send(), which this database does not have', p_broadcast_mode
            USING HINT = 'Use broadcast mode auto or notify on plain Postgres.';
    END IF;

    SELECT puballtables INTO v_all_tables FROM pg_catalog.pg_publication WHERE pubname = 'supabase_realtime';
    IF NOT FOUND THEN
        CREATE PUBLICATION supabase_realtime;
        v_created_publication := true;
        v_all_tables := false;
    END IF;

    FOR v_route IN
        SELECT * FROM pg_catalog.jsonb_to_recordset(p_routes) AS r("table" text, topic text, "trigger" text)
    LOOP
        IF v_route."table" IS NULL OR v_route.topic IS NULL OR v_route.topic = '' THEN
            RAISE EXCEPTION 'supabase_push: every route needs a table and a topic, got %', pg_catalog.row_to_json(v_route);
        END IF;
        v_ident := pg_catalog.parse_ident(v_route."table");
        IF pg_catalog.cardinality(v_ident) = 1 THEN
            v_schema := 'public';
            v_table := v_ident[1];
        ELSIF pg_catalog.cardinality(v_ident) = 2 THEN
            v_schema := v_ident[1];
            v_table := v_ident[2];
        ELSE
            RAISE EXCEPTION 'supabase_push: % is not a table name (use table or schema.table)', v_route."table";
        END IF;
        SELECT c.oid INTO v_relid
        FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = v_schema AND c.relname = v_table AND c.relkind IN ('r', 'p');
        IF NOT FOUND THEN
            RAISE EXCEPTION 'supabase_push: table %.% does not exist', pg_catalog.quote_ident(v_schema), pg_catalog.quote_ident(v_table)
                USING ERRCODE = 'undefined_table',
                      HINT = 'Create it first (supabase-push apply --create-tables creates the reference trading tables), or route another table.';
        END IF;
        v_wanted := v_wanted || (v_schema || '.' || v_table);
        v_trigger := coalesce(v_route."trigger", CASE v_table
            WHEN 'positions' THEN 'position_change_trigger'
            WHEN 'trades' THEN 'trade_executed_trigger'
            WHEN 'portfolio_snapshots' THEN 'portfolio_update_trigger'
            ELSE 'supabase_push_change_trigger' END);

        -- A trigger of another name left by an earlier apply of this route goes away.
        SELECT r.trigger_name INTO v_old_trigger FROM supabase_push.routes r
        WHERE r.schema_name = v_schema AND r.table_name = v_table;
        IF v_old_trigger <> v_trigger THEN
            EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS %I ON %I.%I', v_old_trigger, v_schema, v_table);
        END IF;

        v_added := false;
        IF NOT v_all_tables AND NOT EXISTS (
            SELECT FROM pg_catalog.pg_publication_tables
            WHERE pubname = 'supabase_realtime' AND schemaname = v_schema AND tablename = v_table
        ) THEN
            EXECUTE pg_catalog.format('ALTER PUBLICATION supabase_realtime ADD TABLE %I.%I', v_schema, v_table);
            v_added := true;
        END IF;

        -- The row trigger, and a statement trigger for TRUNCATE (which fires no row trigger): it logs
        -- one change with op TRUNCATE and no rows, so subscribers learn that every row is gone. An
        -- identical trigger is left alone, so that applying twice changes nothing.
        FOR v_kind IN
            SELECT * FROM (VALUES
                (v_trigger, 29, 'INSERT OR UPDATE OR DELETE', 'ROW'),    -- tgtype ROW | INSERT | DELETE | UPDATE
                ('supabase_push_truncate', 32, 'TRUNCATE', 'STATEMENT')  -- tgtype TRUNCATE (both AFTER)
            ) AS k (name, tgtype, events, level)
        LOOP
            IF NOT EXISTS (
                SELECT FROM pg_catalog.pg_trigger t
                WHERE t.tgrelid = v_relid AND t.tgname = v_kind.name
                  AND t.tgfoid = 'supabase_push.capture_change_v1()'::regprocedure
                  AND t.tgtype = v_kind.tgtype
                  AND t.tgenabled = 'O'
                  AND t.tgnargs = 1
                  AND t.tgargs = pg_catalog.convert_to(v_route.topic, 'UTF8') || '\x00'::bytea
            ) THEN
                EXECUTE pg_catalog.format(
                    'CREATE OR REPLACE TRIGGER %I AFTER %s ON %I.%I '
                    'FOR EACH %s EXECUTE FUNCTION supabase_push.capture_change_v1(%L)',
                    v_kind.name, v_kind.events, v_schema, v_table, v_kind.level, v_route.topic);
            END IF;
        END LOOP;

        INSERT INTO supabase_push.routes AS r
            (schema_name, table_name, topic, trigger_name, added_to_publication)
        VALUES (v_schema, v_table, v_route.topic, v_trigger, v_added)
        ON CONFLICT (schema_name, table_name) DO UPDATE
        SET topic = EXCLUDED.topic,
            trigger_name = EXCLUDED.trigger_name,
            added_to_publication = r.added_to_publication OR EXCLUDED.added_to_publication
        WHERE (r.topic, r.trigger_name, r.added_to_publication)
              IS DISTINCT FROM (EXCLUDED.topic, EXCLUDED.trigger_name,
                                r.added_to_publication OR EXCLUDED.added_to_publication);
    END LOOP;

    -- Routes dropped from the set: remove their triggers and what we added.
    PERFORM supabase_push.drop_route_v1(r.schema_name, r.table_name)
    FROM supabase_push.routes r
    WHERE NOT (r.schema_name || '.' || r.table_name = ANY (v_wanted));

    INSERT INTO supabase_push.installation AS i
        (schema_version, fingerprint, broadcast_mode, private_broadcast, created_publication)
    VALUES (1, supabase_push.fingerprint_v1(), p_broadcast_mode, p_private_broadcast, v_created_publication)
    ON CONFLICT (singleton) DO UPDATE
    SET schema_version = EXCLUDED.schema_version,
        fingerprint = EXCLUDED.fingerprint,
        broadcast_mode = EXCLUDED.broadcast_mode,
        private_broadcast = EXCLUDED.private_broadcast,
        created_publication = i.created_publication OR EXCLUDED.created_publication,
        updated_at = pg_catalog.now()
    WHERE (i.schema_version, i.fingerprint, i.broadcast_mode, i.private_broadcast)
          IS DISTINCT FROM (EXCLUDED.schema_version, EXCLUDED.fingerprint,
                            EXCLUDED.broadcast_mode, EXCLUDED.private_broadcast)
       OR (EXCLUDED.created_publication AND NOT i.created_publication);

    INSERT INTO supabase_push.push_path AS p (applied) VALUES (supabase_push.broadcast_paths_v1(p_broadcast_mode))
    ON CONFLICT (singleton) DO UPDATE SET applied = EXCLUDED.applied
    WHERE p.applied IS DISTINCT FROM EXCLUDED.applied;
END
$$;

-- Settings: `supabase-push apply` sets these for its session; pasted as is, the defaults
-- apply. Realtime broadcasts are private by default, like realtime.send() itself.
SELECT supabase_push.install_v1(
    coalesce(nullif(pg_catalog.current_setting('supabase_push.routes', true), ''),
        '[{"table": "public.positions", "topic": "position-updates", "trigger": "position_change_trigger"},
          {"table": "public.trades", "topic": "trade-updates", "trigger": "trade_executed_trigger"},
          {"table": "public.portfolio_snapshots", "topic": "portfolio-updates", "trigger": "portfolio_update_trigger"}]'
    )::jsonb,
    coalesce(nullif(pg_catalog.current_setting('supabase_push.broadcast_mode', true), ''), 'auto'),
    coalesce(nullif(pg_catalog.current_setting('supabase_push.private_broadcast', true), ''), 'true')::boolean
);

COMMIT;
