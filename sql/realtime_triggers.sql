-- supabase-push: realtime triggers for positions, trades and portfolio snapshots.
--
-- Run it with `supabase-push apply`, paste it into the Supabase SQL editor, or
-- `psql -v ON_ERROR_STOP=1 -f sql/realtime_triggers.sql`. It is idempotent and runs as
-- one transaction: applying it twice changes nothing, a failure changes nothing.
--
-- What it installs (schema version 9):
--   * publication supabase_realtime (created if absent) with every routed table;
--   * one AFTER ROW trigger per routed table that appends the change to a change log, and
--     nothing else: no lock, no NOTIFY, no deferred work, so writers never wait for each other;
--   * supabase_push.stamp_v2(), the stamper: after commit, in its own transaction, it gives
--     the transactions that became visible since its last round consecutive commit-ordered
--     sequence numbers (the cursor), then pushes them: realtime.messages where the `realtime`
--     schema has it (hosted Supabase, or the local server), else pg_notify() on a channel
--     named after the topic (a hint without the rows: any role may LISTEN, so listeners read
--     the change by cursor with their rights). supabase-push processes run it (one per
--     database at a time), `supabase-push stamp` runs it alone, pg_cron can run
--     `CALL supabase_push.stamp_loop_v2(59)` every minute with no process at all;
--   * public.supabase_push_changes(), a STABLE function that reads the change log by
--     cursor (SQL or PostgREST RPC) so a subscriber that was away loses nothing;
--   * supabase_push.publish(topic, event, payload, key), an event from a service appended to
--     the same log inside the caller's transaction, deduplicated by key (the outbox).
--
-- A database with an older schema version is upgraded by the scripts of sql/migrations/ run in
-- the same transaction before this file (0002_pre_stamper.sql for version 1, then
-- 0003_pre_events.sql), then their `post` parts (0002_post_stamper.sql); `supabase-push apply`
-- does all of it.
--
-- Default routes: positions -> position-updates (position_change_trigger),
-- trades -> trade-updates (trade_executed_trigger),
-- portfolio_snapshots -> portfolio-updates (portfolio_update_trigger).
-- The CLI passes other routes and settings through the session settings read at the end.

BEGIN;

-- Two concurrent applies (or an apply and an uninstall) run one after the other.
SELECT pg_advisory_xact_lock(7218311412069051321);

-- A database installed by a newer supabase-push (a later schema version) is left as it is:
-- this script would put version 9's functions over the newer ones. One with an older version
-- needs its migrations first.
DO $$
DECLARE
    v_version integer;
BEGIN
    IF pg_catalog.to_regclass('supabase_push.installation') IS NOT NULL THEN
        SELECT schema_version INTO v_version FROM supabase_push.installation;  -- planned only once it exists
        IF v_version > 9 THEN
            RAISE EXCEPTION 'supabase_push: this database has schema version %, newer than this script (version 9)',
                v_version
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'Upgrade supabase-push (pip install -U supabase-push) and apply its SQL; a downgrade is not supported.';
        ELSIF v_version < 9 THEN
            RAISE EXCEPTION 'supabase_push: this database has schema version %; run its migrations first', v_version
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'supabase-push apply runs them; with psql, run the sql/migrations/NNNN_pre_*.sql scripts '
                             'after version ' || v_version || ' and this file in one transaction, then their _post_ parts.';
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

-- One row per change, appended by the writer's trigger. `txid` ties it to its transaction;
-- the cursor position is the transaction's commit sequence (commits.seq) then `id`. The
-- identity draws one value at a time (CACHE 1), so ids follow the order changes were made.
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

-- One row per committed writing transaction, in commit order, written by the stamper
-- (stamp_v2) after the transaction committed: its changes are those of change_log with its
-- txid and an id in [first_id, last_id] (the id range tells a transaction from one of an
-- older cluster that had the same txid, after a pg_dump/restore). Insert-only. The last row of
-- each stamping round also records where the round left off (snapshot, heads) for the next.
CREATE TABLE IF NOT EXISTS supabase_push.commits (
    seq bigint PRIMARY KEY,
    txid xid8 NOT NULL,
    first_id bigint NOT NULL,
    last_id bigint NOT NULL,
    committed_at timestamptz NOT NULL,
    snapshot pg_snapshot,
    system_identifier bigint,
    heads jsonb
);
CREATE INDEX IF NOT EXISTS commits_txid_idx ON supabase_push.commits (txid);

-- How far `prune` has deleted the change log: every change up to (pruned_seq, pruned_id) is
-- gone. A reader whose cursor is behind it gets a GAP row first (supabase_push_changes).
CREATE TABLE IF NOT EXISTS supabase_push.retention (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    pruned_seq bigint NOT NULL DEFAULT 0,
    pruned_id bigint NOT NULL DEFAULT 0,
    pruned_at timestamptz
);
INSERT INTO supabase_push.retention DEFAULT VALUES ON CONFLICT DO NOTHING;

-- Topics that take events from services (supabase_push.publish) besides the routed tables' own:
-- publishing to a topic nobody declared is an error, not a message nobody hears.
CREATE TABLE IF NOT EXISTS supabase_push.event_topics (
    topic text PRIMARY KEY CHECK (topic <> ''),
    declared_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);

-- The idempotency keys of published events: a publish that reuses a key is the same event (the
-- first one's change id), or an error when what it publishes differs. The transaction and change
-- id say which change the key names, so `prune` forgets a key when it deletes its event.
CREATE TABLE IF NOT EXISTS supabase_push.event_keys (
    key text PRIMARY KEY,
    txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    change_id bigint NOT NULL,
    digest text NOT NULL,
    published_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);

-- AFTER ROW trigger of every routed table: append the change. TG_ARGV[0] is the topic. It
-- must stay this cheap: anything here is paid on the user's write path (no lock, no NOTIFY).
CREATE OR REPLACE FUNCTION supabase_push.capture_change_v1()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
    INSERT INTO supabase_push.change_log (topic, schema_name, table_name, op, record, old_record)
    VALUES (
        TG_ARGV[0], TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP,
        CASE WHEN TG_OP <> 'DELETE' THEN pg_catalog.to_jsonb(NEW) END,
        CASE WHEN TG_OP <> 'INSERT' THEN pg_catalog.to_jsonb(OLD) END
    );
    RETURN NULL;
END
$$;

-- The same for a partitioned table (schema 9), whose partitions run clones of its triggers: a change
-- is the routed table's, TG_ARGV[1].TG_ARGV[2], not the partition's (TG_TABLE_NAME), wherever the
-- partition lives. A function of its own, so that other tables' triggers pay nothing for it.
CREATE OR REPLACE FUNCTION supabase_push.capture_partitioned_change_v1()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
    INSERT INTO supabase_push.change_log (topic, schema_name, table_name, op, record, old_record)
    VALUES (
        TG_ARGV[0], TG_ARGV[1], TG_ARGV[2], TG_OP,
        CASE WHEN TG_OP <> 'DELETE' THEN pg_catalog.to_jsonb(NEW) END,
        CASE WHEN TG_OP <> 'INSERT' THEN pg_catalog.to_jsonb(OLD) END
    );
    RETURN NULL;
END
$$;

-- The event envelope, the same on every transport (docs/architecture.md, "The event"). An event
-- (op EVENT, supabase_push.publish) has its name as "event", no table, and its payload as record.
CREATE OR REPLACE FUNCTION supabase_push.envelope_v1(
    change supabase_push.change_log, seq bigint, committed_at timestamptz)
RETURNS jsonb
LANGUAGE sql
STABLE  -- a timestamptz in JSON is written in the session's time zone
AS $$
    SELECT pg_catalog.jsonb_build_object(
        'id', change.id,
        'cursor', seq::pg_catalog.text OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) change.id::pg_catalog.text,
        'topic', change.topic,
        'schema', change.schema_name,
        'table', CASE WHEN change.op OPERATOR(pg_catalog.=) 'EVENT' THEN '' ELSE change.table_name END,
        'op', change.op,
        'record', change.record,
        'old_record', change.old_record,
        'commit_ts', committed_at
    ) OPERATOR(pg_catalog.||) CASE WHEN change.op OPERATOR(pg_catalog.=) 'EVENT'
                                   THEN pg_catalog.jsonb_build_object('event', change.table_name)
                                   ELSE '{}'::pg_catalog.jsonb END
$$;
-- No SET clause on this function nor on broadcast_paths_v1, and every operator named with its
-- schema: so the planner inlines them into the round's queries, which run with an empty search_path.
-- With a SET clause each call was planned again: 80 us of a 470 us round (schema 5), and twice
-- the cost of each change's envelope on the Supabase path.

-- The push paths a broadcast mode takes on this database: 'auto' means realtime.send()
-- where the realtime schema has it (hosted Supabase, the local server), else NOTIFY.
CREATE OR REPLACE FUNCTION supabase_push.broadcast_paths_v1(p_mode text)
RETURNS text[]
LANGUAGE sql
STABLE
AS $$
    SELECT CASE
        WHEN p_mode OPERATOR(pg_catalog.=) 'realtime' THEN ARRAY['realtime']::pg_catalog.text[]
        WHEN p_mode OPERATOR(pg_catalog.=) 'notify' THEN ARRAY['notify']::pg_catalog.text[]
        WHEN p_mode OPERATOR(pg_catalog.=) 'both' THEN ARRAY['realtime', 'notify']::pg_catalog.text[]
        WHEN p_mode OPERATOR(pg_catalog.=) 'none' THEN ARRAY[]::pg_catalog.text[]
        WHEN pg_catalog.to_regprocedure('realtime.send(jsonb,text,text,boolean)') IS NOT NULL
            THEN ARRAY['realtime']::pg_catalog.text[]
        ELSE ARRAY['notify']::pg_catalog.text[]
    END
$$;

-- Pushes the changes of one stamping round (transactions p_first..p_last, in cursor order) and
-- returns each topic's last cursor after them. p_heads is each topic's last cursor before them.
-- Each push carries "prev": for every topic, the cursor of its last change before this one. A
-- subscriber to topics S whose last change is the latest of those cursors over S takes the
-- push as it comes; any other knows it missed something and reads by cursor. The heads move in
-- the stamper's transaction, for every round, pushed or not, so a failed or skipped push can
-- never be vouched for by a later one.
-- Both queries look each commit's changes up by index, behind an OFFSET 0 fence: with a plain join,
-- the generic plan a stamping loop settles on (from its sixth round) took `seq BETWEEN $1 AND $2`
-- for a fifth of a percent of the commits table and, once that was large, hashed the whole change
-- log on every round (schema 4: 68 ms a round at 80k commits).
CREATE OR REPLACE FUNCTION supabase_push.publish_v2(p_first bigint, p_last bigint, p_heads jsonb)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = ''
SET jit = off  -- see unstamped_v4
AS $$
DECLARE
    v_mode text;
    v_private boolean;
    v_paths text[];
    v_realtime boolean;
    v_notify boolean;
    v_heads jsonb := p_heads;
    v_change record;
    v_envelope jsonb;
    v_payloads jsonb[] := '{}';
    v_events text[] := '{}';
    v_topics text[] := '{}';
    v_hints jsonb := '{}';
BEGIN
    SELECT broadcast_mode, private_broadcast INTO v_mode, v_private FROM supabase_push.installation;
    v_paths := supabase_push.broadcast_paths_v1(v_mode);
    v_realtime := 'realtime' = ANY (v_paths);
    v_notify := 'notify' = ANY (v_paths);
    IF v_realtime THEN
        FOR v_change IN
            SELECT x.change, c.seq, c.committed_at
            FROM supabase_push.commits c,
                 LATERAL (SELECT l AS change, l.id FROM supabase_push.change_log l
                          WHERE l.txid = c.txid AND l.id BETWEEN c.first_id AND c.last_id
                          OFFSET 0) x  -- each commit's changes by index (see below)
            WHERE c.seq BETWEEN p_first AND p_last
            ORDER BY c.seq, x.id
        LOOP
            v_envelope := supabase_push.envelope_v1(v_change.change, v_change.seq, v_change.committed_at)
                          || pg_catalog.jsonb_build_object('prev', v_heads);
            v_payloads := v_payloads || v_envelope;
            -- A service's event goes out under its own name, so that Realtime clients can listen for it.
            v_events := v_events || CASE WHEN (v_change.change).op = 'EVENT' THEN (v_change.change).table_name
                                         ELSE (v_change.change).op END;
            v_topics := v_topics || (v_change.change).topic;
            v_heads := v_heads || pg_catalog.jsonb_build_object(
                (v_change.change).topic, v_change.seq::text || ':' || (v_change.change).id::text);
        END LOOP;
    END IF;
    IF v_notify OR NOT v_realtime THEN
        -- Each topic's last change in the round is the topic's new head and what its NOTIFY names:
        -- one hint per topic and round, with the heads before the round as prev, so that a listener
        -- that has read up to the round takes the first hint it gets as continuing its stream,
        -- whichever topics it follows. LISTEN has no privilege check (any role may listen on any
        -- channel), so a NOTIFY carries no row, only where to read it: the listener reads by cursor
        -- with its own rights ("truncated": the push has no rows). One query, not a step per change.
        SELECT p_heads || coalesce(pg_catalog.jsonb_object_agg((h.change).topic,
                                                               h.seq::text || ':' || (h.change).id::text), '{}'),
               coalesce(pg_catalog.jsonb_object_agg((h.change).topic,
                   supabase_push.envelope_v1(h.change, h.seq, h.committed_at) - 'record' - 'old_record'
                   || pg_catalog.jsonb_build_object('prev', p_heads, 'truncated', true)), '{}')
        INTO v_heads, v_hints
        FROM (SELECT DISTINCT ON (x.topic) x.change, c.seq, c.committed_at
              FROM supabase_push.commits c,
                   LATERAL (SELECT l AS change, l.topic, l.id FROM supabase_push.change_log l
                            WHERE l.txid = c.txid AND l.id BETWEEN c.first_id AND c.last_id
                            OFFSET 0) x
              WHERE c.seq BETWEEN p_first AND p_last
              ORDER BY x.topic, c.seq DESC, x.id DESC) h;
    END IF;
    IF NOT (v_realtime OR v_notify) THEN
        RETURN v_heads;
    END IF;
    -- One subtransaction for the whole round, and no NOTIFY or lock in any writer's: a failed
    -- push never undoes the stamps (subscribers catch up from the change log).
    BEGIN
        IF v_realtime AND pg_catalog.cardinality(v_payloads) > 0 THEN
            -- One statement for every change of the round where the stamper may write Realtime's
            -- table (realtime.send() opens a subtransaction per change), else realtime.send().
            IF pg_catalog.to_regclass('realtime.messages') IS NOT NULL
               AND pg_catalog.has_table_privilege('realtime.messages', 'INSERT') THEN
                INSERT INTO realtime.messages (payload, event, topic, private, extension)
                SELECT m.payload, m.event, m.topic, v_private, 'broadcast'
                FROM ROWS FROM (pg_catalog.unnest(v_payloads), pg_catalog.unnest(v_events),
                                pg_catalog.unnest(v_topics)) AS m (payload, event, topic);
            ELSE
                FOR i IN 1 .. pg_catalog.cardinality(v_payloads) LOOP
                    PERFORM realtime.send(v_payloads[i], v_events[i], v_topics[i], v_private);
                END LOOP;
            END IF;
        END IF;
        IF v_notify THEN
            PERFORM pg_catalog.pg_notify(h.key, h.value::text) FROM pg_catalog.jsonb_each(v_hints) h;
        END IF;
    EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'supabase_push: broadcast of commits %..% failed (subscribers will catch up from the change log): %',
            p_first, p_last, SQLERRM;
        UPDATE supabase_push.health
        SET broadcast_failures = broadcast_failures + 1,
            last_failure = SQLERRM,
            last_failure_at = pg_catalog.now();
    END;
    RETURN v_heads;
END
$$;

-- The snapshot the last round kept: every change of a transaction it shows as finished has its
-- cursor. NULL when there is nothing to go on: no round yet (a new install, everything pruned), or
-- another cluster's round (a pg_dump restored here, where txids start again lower; p_now is a
-- snapshot of this cluster, p_system its system identifier: the current ones when NULL), and then
-- any change may lack a cursor.
CREATE OR REPLACE FUNCTION supabase_push.stamped_until_v4(p_now pg_snapshot DEFAULT NULL,
                                                          p_system bigint DEFAULT NULL)
RETURNS pg_snapshot
LANGUAGE plpgsql  -- not sql: a SQL function called from PL/pgSQL is planned again at every call
STABLE
SET search_path = ''
AS $$
BEGIN
    RETURN (SELECT c.snapshot
            FROM (SELECT c.snapshot, c.system_identifier FROM supabase_push.commits c
                  WHERE c.snapshot IS NOT NULL ORDER BY c.seq DESC LIMIT 1) c
            WHERE c.system_identifier IS NOT DISTINCT FROM
                      coalesce(p_system, (pg_catalog.pg_control_system()).system_identifier)
              AND pg_catalog.pg_snapshot_xmax(coalesce(p_now, pg_catalog.pg_current_snapshot()))
                  >= pg_catalog.pg_snapshot_xmax(c.snapshot));
END
$$;

-- The changes without a cursor yet: those of the transactions that had not finished in p_since (in
-- its xip list, or begun after it) and have finished in p_until (NULL: in the caller's snapshot),
-- less any a round has stamped (a commits row with the txid and the id in its range). p_since NULL:
-- every change is looked at (see stamped_until_v4). The stamper, pending_v2() and
-- supabase_push_snapshot_start() all ask this, with the caller's rights.
-- Index lookups only, whatever the size of the log: the transactions first (the xip list, then an
-- index range of txids), then each one's rows by txid. A query joining the xip list to the log let
-- the planner scan the whole log on every round, in parallel workers, once it had grown; so did
-- `txid = ANY (list)` when the log's statistics held a few big transactions (each txid then looks
-- like thousands of rows).
-- No JIT here nor in the round's other steps: a log that has grown since autovacuum last analyzed
-- it looks like a thousand rows per txid, the lookup's estimate passes jit_above_cost, and compiling
-- it took 10 ms of a 1 ms round, every round (schema 4).
CREATE OR REPLACE FUNCTION supabase_push.unstamped_v4(p_since pg_snapshot, p_until pg_snapshot)
RETURNS TABLE (txid xid8, id bigint, topic text)
LANGUAGE plpgsql
STABLE
SET search_path = ''
SET jit = off
AS $$
DECLARE
    v_txids xid8[];
BEGIN
    IF p_since IS NULL THEN
        RETURN QUERY
            SELECT l.txid, l.id, l.topic FROM supabase_push.change_log l
            WHERE (p_until IS NULL OR pg_catalog.pg_visible_in_snapshot(l.txid, p_until))
              AND NOT EXISTS (SELECT FROM supabase_push.commits s
                              WHERE s.txid = l.txid AND l.id BETWEEN s.first_id AND s.last_id);
        RETURN;
    END IF;
    v_txids := ARRAY(
        SELECT x FROM pg_catalog.pg_snapshot_xip(p_since) AS x
        WHERE p_until IS NULL OR pg_catalog.pg_visible_in_snapshot(x, p_until)
        UNION
        SELECT DISTINCT l.txid FROM supabase_push.change_log l
        WHERE l.txid >= pg_catalog.pg_snapshot_xmax(p_since)
          AND (p_until IS NULL OR (l.txid < pg_catalog.pg_snapshot_xmax(p_until)
                                   AND pg_catalog.pg_visible_in_snapshot(l.txid, p_until))));
    RETURN QUERY
        SELECT c.txid, c.id, c.topic
        FROM pg_catalog.unnest(v_txids) AS t (txid),
             LATERAL (SELECT l.txid, l.id, l.topic FROM supabase_push.change_log l
                      WHERE l.txid = t.txid
                        AND NOT EXISTS (SELECT FROM supabase_push.commits s
                                        WHERE s.txid = t.txid AND l.id BETWEEN s.first_id AND s.last_id)
                      OFFSET 0) AS c;  -- OFFSET 0: planned alone, one transaction's rows by index
END
$$;

-- The stamper: one round. It gives every transaction that committed changes since the last
-- round (and is visible now) the next consecutive sequence numbers, ordered by the largest
-- change id of each, then pushes them. Returns how many transactions it stamped, or NULL when
-- another round holds the lock (p_wait: wait for it instead, up to 2 s: a round stuck behind a lock
-- someone else holds on a table it writes, e.g. realtime.messages, must not hang every reader that
-- stamps before it reads; they read what is stamped). Runs after the writers' commits, in its own
-- transaction: writers never wait for it, nor for each other.
--
-- Why the order is right (docs/architecture.md, "Commit order"): two transactions that touch
-- the same row are ordered by the row lock, so the later one logs that change after the
-- earlier one committed, with an id above every id the earlier one drew; the earlier one is
-- visible to any round that sees the later one, and sorts first within a round. Which
-- transactions are new is a snapshot diff (PgQ's): those not visible in the round's stored
-- snapshot are the ones in progress then (its xip list) or begun after (txid >= its xmax).
CREATE OR REPLACE FUNCTION supabase_push.stamp_v2(p_wait boolean DEFAULT false)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
SET jit = off  -- see unstamped_v4
AS $$
DECLARE
    v_lock_timeout text;
    v_last supabase_push.commits;
    v_snapshot pg_snapshot;
    v_since pg_snapshot;
    v_system bigint;
    v_reset boolean;
    v_next bigint;
    v_stamped integer;
    v_heads jsonb;
BEGIN
    IF pg_catalog.current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'supabase_push: the stamper needs READ COMMITTED, not %',
            pg_catalog.current_setting('transaction_isolation')
            USING ERRCODE = 'invalid_transaction_state';
    END IF;
    IF NOT pg_catalog.pg_try_advisory_xact_lock(7218311412069051322) THEN
        IF NOT p_wait THEN
            RETURN NULL;
        END IF;
        -- Queued on the lock (no polling), under a lock_timeout for this wait alone. A lock taken in
        -- the block stays with the transaction when the block ends.
        v_lock_timeout := pg_catalog.current_setting('lock_timeout');
        PERFORM pg_catalog.set_config('lock_timeout', '2s', true);
        BEGIN
            PERFORM pg_catalog.pg_advisory_xact_lock(7218311412069051322);
        EXCEPTION WHEN lock_not_available THEN
            PERFORM pg_catalog.set_config('lock_timeout', v_lock_timeout, true);
            RETURN NULL;
        END;
        PERFORM pg_catalog.set_config('lock_timeout', v_lock_timeout, true);
    END IF;
    -- A stamp a reader has seen must survive a crash, or its seq could go to other changes.
    PERFORM pg_catalog.set_config('synchronous_commit', 'on', true);
    -- Each statement from here has a snapshot taken after the lock: it sees every earlier round.
    SELECT * INTO v_last FROM supabase_push.commits c WHERE c.snapshot IS NOT NULL ORDER BY c.seq DESC LIMIT 1;
    v_snapshot := pg_catalog.pg_current_snapshot();
    -- Read from the control file once per session (it costs a tenth of a round): a session never
    -- outlives its cluster.
    v_system := NULLIF(pg_catalog.current_setting('supabase_push.system_identifier', true), '')::bigint;
    IF v_system IS NULL THEN
        v_system := (pg_catalog.pg_control_system()).system_identifier;
        PERFORM pg_catalog.set_config('supabase_push.system_identifier', v_system::text, false);
    END IF;
    v_since := supabase_push.stamped_until_v4(v_snapshot, v_system);
    v_reset := v_since IS NULL;
    SELECT GREATEST(coalesce(pg_catalog.max(c.seq), 0), (SELECT r.pruned_seq FROM supabase_push.retention r)) + 1
    INTO v_next FROM supabase_push.commits c;

    INSERT INTO supabase_push.commits (seq, txid, first_id, last_id, committed_at)
    SELECT v_next + pg_catalog.row_number() OVER (ORDER BY f.last_id) - 1, f.txid, f.first_id, f.last_id,
           pg_catalog.now()
    FROM (SELECT u.txid, pg_catalog.min(u.id) AS first_id, pg_catalog.max(u.id) AS last_id
          FROM supabase_push.unstamped_v4(v_since, v_snapshot) u
          GROUP BY u.txid) f;
    GET DIAGNOSTICS v_stamped = ROW_COUNT;

    IF v_stamped = 0 THEN
        IF v_reset AND v_last.seq IS NOT NULL THEN  -- remember the new cluster, or every round resets
            UPDATE supabase_push.commits SET snapshot = v_snapshot, system_identifier = v_system
            WHERE seq = v_last.seq;
        END IF;
        RETURN 0;
    END IF;
    v_heads := v_last.heads;
    IF v_heads IS NULL THEN  -- no round to go on: each topic's last change as the log has it
        SELECT coalesce(pg_catalog.jsonb_object_agg(h.topic, h.head), '{}') INTO v_heads FROM (
            SELECT DISTINCT ON (l.topic) l.topic, c.seq::text || ':' || l.id::text AS head
            FROM supabase_push.commits c
            JOIN supabase_push.change_log l ON l.txid = c.txid AND l.id BETWEEN c.first_id AND c.last_id
            WHERE c.seq < v_next
            ORDER BY l.topic, c.seq DESC, l.id DESC) h;
    END IF;
    v_heads := supabase_push.publish_v2(v_next, v_next + v_stamped - 1, v_heads);
    UPDATE supabase_push.commits
    SET snapshot = v_snapshot, system_identifier = v_system, heads = v_heads
    WHERE seq = v_next + v_stamped - 1;  -- written in this transaction: no older version is left behind
    RETURN v_stamped;
END
$$;

-- Stamping rounds for p_seconds, each its own transaction, as long as nobody else runs this
-- loop on the database (a session lock: one loop per database, whoever runs it). Rounds follow
-- each other every p_fast_ms while there is work and slow down to p_idle_ms after a quiet
-- second: the first change after a quiet spell waits up to p_idle_ms (half of it on average)
-- before a round sees it. 10 ms keeps that wait small for the sporadic changes of a quiet market
-- (50 ms, schema 6: 25 ms on average) for a few tenths of a percent of a core more (the loop's
-- backend, quiet: 0.2 % at 50 ms, 0.4-0.6 % at 10 ms; a look is a snapshot read and an empty
-- transaction). supabase-push processes call it; so can pg_cron (`CALL supabase_push.stamp_loop_v2(59)`
-- every minute). Call it outside a transaction block; it returns led = false at once when
-- another loop holds the database.
-- A round has a fixed cost (its queries, its transaction and flush), so the loop skips it when
-- the cluster's snapshot is what it was before the last round (no transaction has finished or
-- begun writing since: nothing new can have committed), and under load it pauses p_fast_ms per
-- transaction the last round stamped, up to 10 x p_fast_ms: fewer, bigger rounds, which leaves
-- the writers the CPU (at 2,000 commits/s on 2 cores, about half the stamper's) for a few
-- milliseconds more before a change is pushed. pg_sleep waits in whole milliseconds, and twice
-- when asked for exactly one: each pause asks for a little less.
-- Whatever the database or role sets (schema 8): its transactions are READ COMMITTED, which a round
-- needs, where the default is REPEATABLE READ or SERIALIZABLE (the session's default changes; the
-- transaction the CALL began in ends first, before any round), and it returns before a
-- statement_timeout shorter than p_seconds would cancel it (at 80 % of it): a Stamper calls it
-- again at once, pg_cron at its next minute.
CREATE OR REPLACE PROCEDURE supabase_push.stamp_loop_v2(
    p_seconds double precision DEFAULT 55,
    p_fast_ms double precision DEFAULT 1,
    p_idle_ms double precision DEFAULT 10,
    INOUT led boolean DEFAULT NULL)
LANGUAGE plpgsql
AS $$
DECLARE
    v_timeout_ms double precision := (SELECT s.setting::double precision FROM pg_catalog.pg_settings s
                                      WHERE s.name = 'statement_timeout');
    v_deadline timestamptz := pg_catalog.clock_timestamp() + interval '1 millisecond' *
        CASE WHEN v_timeout_ms > 0 THEN LEAST(p_seconds * 1000, v_timeout_ms * 0.8) ELSE p_seconds * 1000 END;
    v_busy_at timestamptz := pg_catalog.clock_timestamp();
    v_sleep_ms double precision := p_fast_ms;
    v_stamped integer;
    v_seen text;
    v_now text;
BEGIN
    IF pg_catalog.current_setting('transaction_isolation') <> 'read committed' THEN
        PERFORM pg_catalog.set_config('default_transaction_isolation', 'read committed', false);
        COMMIT;
    END IF;
    led := pg_catalog.pg_try_advisory_lock(7218311412069051323);
    IF NOT led THEN
        RETURN;
    END IF;
    LOOP
        v_now := pg_catalog.pg_current_snapshot()::text;
        IF v_now IS DISTINCT FROM v_seen THEN
            v_seen := v_now;
            v_stamped := supabase_push.stamp_v2(true);
        ELSE
            v_stamped := 0;
        END IF;
        COMMIT;
        EXIT WHEN pg_catalog.clock_timestamp() >= v_deadline;
        IF v_stamped > 0 THEN
            v_busy_at := pg_catalog.clock_timestamp();
            v_sleep_ms := LEAST(p_fast_ms * v_stamped, 10 * p_fast_ms);
        ELSIF pg_catalog.clock_timestamp() - v_busy_at > interval '1 second' THEN
            v_sleep_ms := LEAST(v_sleep_ms * 2, p_idle_ms);
        ELSE
            v_sleep_ms := p_fast_ms;
        END IF;
        PERFORM pg_catalog.pg_sleep(v_sleep_ms * 0.95 / 1000.0);
    END LOOP;
    PERFORM pg_catalog.pg_advisory_unlock(7218311412069051323);
END
$$;

-- What waits for the stamper: committed changes without a cursor yet (and their transactions),
-- when a round last stamped something, and the backend running the stamping loop (NULL: none;
-- a reader's own round still stamps). For status, verify, doctor and subscribers' stats; counts
-- only, so any role may ask.
CREATE OR REPLACE FUNCTION supabase_push.pending_v2(
    OUT changes bigint, OUT transactions bigint, OUT stamped_at timestamptz, OUT stamper_pid integer)
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
    SELECT pg_catalog.count(*), pg_catalog.count(DISTINCT u.txid),
           (SELECT t.committed_at FROM supabase_push.commits t ORDER BY t.seq DESC LIMIT 1),
           (SELECT l.pid FROM pg_catalog.pg_locks l
            WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
              AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database())
              AND l.classid = 1680644092 AND l.objid = 713436091  -- the loop's key, 7218311412069051323
            LIMIT 1)
    FROM supabase_push.unstamped_v4(supabase_push.stamped_until_v4(), NULL) u
$$;

-- For readers that only have PostgREST (hosted Supabase without a supabase-push process nor
-- pg_cron): one stamping round, POST /rest/v1/rpc/supabase_push_stamp. Service role only.
CREATE OR REPLACE FUNCTION public.supabase_push_stamp()
RETURNS integer
LANGUAGE sql
VOLATILE
SET search_path = ''
AS $$
    SELECT supabase_push.stamp_v2(true)
$$;
REVOKE EXECUTE ON FUNCTION public.supabase_push_stamp() FROM PUBLIC;

-- An event from a service, appended to the change log inside the caller's transaction (so rows
-- and the event that announces them commit or roll back together), ordered, pushed and read by
-- cursor like a row change. In the log it is a change with op 'EVENT', schema_name '',
-- table_name the event's name and record its payload; envelope_v1 shows the name as "event".
-- p_key makes a retry harmless: the same key with the same topic, event and payload is the
-- first event (its id is returned, nothing is added); with anything else it is an error. Two
-- transactions publishing one key wait for each other (the key's unique index), as they must.
-- Returns the change id. SECURITY DEFINER: a role needs only EXECUTE (granted to service_role).
CREATE OR REPLACE FUNCTION supabase_push.publish(
    p_topic text, p_event text, p_payload jsonb, p_key text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    v_id bigint;
    v_size integer;
    v_digest text;
    v_known supabase_push.event_keys;
BEGIN
    IF p_topic IS NULL OR NOT (
        EXISTS (SELECT FROM supabase_push.event_topics t WHERE t.topic = p_topic)
        OR EXISTS (SELECT FROM supabase_push.routes r WHERE r.topic = p_topic)) THEN
        RAISE EXCEPTION 'supabase_push: unknown topic %', coalesce(pg_catalog.quote_literal(p_topic), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Publish to a routed table''s topic, or declare the topic: supabase-push apply --event-topic NAME.';
    END IF;
    IF p_event IS NULL OR p_event !~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$'
       OR pg_catalog.upper(p_event) IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'GAP', 'EVENT', 'SNAPSHOT', '*') THEN
        RAISE EXCEPTION 'supabase_push: % is not an event name', coalesce(pg_catalog.quote_literal(p_event), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Up to 100 letters, digits, _ . : - (starting with a letter or digit), not a row operation.';
    END IF;
    IF p_payload IS NULL OR pg_catalog.jsonb_typeof(p_payload) <> 'object' THEN
        RAISE EXCEPTION 'supabase_push: an event''s payload must be a JSON object, got %',
            coalesce(pg_catalog.jsonb_typeof(p_payload), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_size := pg_catalog.octet_length(p_payload::text);
    IF v_size > 262144 THEN
        RAISE EXCEPTION 'supabase_push: the payload is % bytes, over the 262144 an event may carry', v_size
            USING ERRCODE = 'program_limit_exceeded',
                  HINT = 'Publish a reference (an id to read the rest from) rather than the data.';
    END IF;
    v_id := pg_catalog.nextval(pg_catalog.pg_get_serial_sequence('supabase_push.change_log', 'id'));
    IF p_key IS NOT NULL THEN
        IF p_key = '' OR pg_catalog.length(p_key) > 200 THEN
            RAISE EXCEPTION 'supabase_push: a key is 1 to 200 characters, got %', pg_catalog.length(p_key)
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        v_digest := pg_catalog.md5(p_topic || E'\n' || p_event || E'\n' || p_payload::text);
        INSERT INTO supabase_push.event_keys (key, change_id, digest) VALUES (p_key, v_id, v_digest)
        ON CONFLICT (key) DO NOTHING;
        IF NOT FOUND THEN
            SELECT * INTO v_known FROM supabase_push.event_keys k WHERE k.key = p_key;
            IF v_known.digest <> v_digest THEN
                RAISE EXCEPTION 'supabase_push: key % was published before with another topic, event or payload',
                    pg_catalog.quote_literal(p_key)
                    USING ERRCODE = 'unique_violation',
                          HINT = 'A key names one event: use a new key for a new event.';
            END IF;
            RETURN v_known.change_id;
        END IF;
    END IF;
    INSERT INTO supabase_push.change_log (id, topic, schema_name, table_name, op, record)
    OVERRIDING SYSTEM VALUE
    VALUES (v_id, p_topic, '', p_event, 'EVENT', p_payload);
    RETURN v_id;
END
$$;
REVOKE EXECUTE ON FUNCTION supabase_push.publish(text, text, jsonb, text) FROM PUBLIC;

-- The same for services that only have PostgREST: POST /rest/v1/rpc/supabase_push_publish.
-- Service role only.
CREATE OR REPLACE FUNCTION public.supabase_push_publish(
    topic text, event text, payload jsonb, key text DEFAULT NULL)
RETURNS bigint
LANGUAGE sql
VOLATILE
SET search_path = ''
AS $$
    SELECT supabase_push.publish(topic, event, payload, key)
$$;
REVOKE EXECUTE ON FUNCTION public.supabase_push_publish(text, text, jsonb, text) FROM PUBLIC;

-- Reads changes after a cursor (after_seq, after_id), in commit order. Call it from SQL or
-- through PostgREST: POST /rest/v1/rpc/supabase_push_changes. Runs with the caller's
-- rights: only roles granted SELECT on the change log can read it. If `prune` deleted
-- changes after the cursor, the first row is op 'GAP' at the pruned-through cursor, so a
-- reader never skips lost changes silently (record: {"after": ..., "pruned_through": ...}).
-- PL/pgSQL, with its generic plan: planned once per session, where a LANGUAGE sql function
-- with a SET clause is planned anew on every call (0.15 ms of a 0.45 ms read of one change). The
-- generic plan walks commits by seq and each one's changes by index whatever the statistics say;
-- a plan made for the call's values (an inlined SQL function) sorted the whole log for a read from
-- the start once the log had outgrown its statistics (twice the time of a 100k catch-up).
CREATE OR REPLACE FUNCTION public.supabase_push_changes(
    after_seq bigint DEFAULT 0,
    after_id bigint DEFAULT 0,
    max_rows integer DEFAULT 500,
    topics text[] DEFAULT NULL)
RETURNS TABLE (
    seq bigint, id bigint, topic text, schema_name text, table_name text, op text,
    record jsonb, old_record jsonb, committed_at timestamptz)
LANGUAGE plpgsql
STABLE
SET search_path = ''
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    RETURN QUERY
    SELECT r.pruned_seq, r.pruned_id, '*'::text, ''::text, ''::text, 'GAP'::text,
           pg_catalog.jsonb_build_object('after', after_seq::text || ':' || after_id::text,
                                         'pruned_through', r.pruned_seq::text || ':' || r.pruned_id::text),
           NULL::jsonb, r.pruned_at
    FROM supabase_push.retention r
    WHERE (r.pruned_seq, r.pruned_id) > (after_seq, after_id)
    UNION ALL
    (SELECT t.seq, l.id, l.topic, l.schema_name, l.table_name, l.op, l.record, l.old_record,
            t.committed_at
     FROM supabase_push.commits t
     JOIN supabase_push.change_log l ON l.txid = t.txid AND l.id BETWEEN t.first_id AND t.last_id
     WHERE t.seq >= after_seq
       AND (t.seq, l.id) > (after_seq, after_id)
       AND (topics IS NULL OR l.topic = ANY (topics))
     ORDER BY t.seq, l.id
     LIMIT max_rows)
    ORDER BY 1, 2
    LIMIT max_rows;
END
$$;
COMMENT ON FUNCTION public.supabase_push_changes(bigint, bigint, integer, text[]) IS
    'supabase-push: changes after the cursor (after_seq, after_id), in commit order';

-- The topics changes can come on: the routed tables' and those declared for events (schema 9). A
-- subscriber names a topic that is neither at start (most likely a typo, else it would wait in
-- silence). The service role may ask, as it may read the log.
CREATE OR REPLACE FUNCTION public.supabase_push_topics()
RETURNS SETOF text
LANGUAGE sql
STABLE
SET search_path = ''
AS $$
    SELECT r.topic FROM supabase_push.routes r
    UNION
    SELECT e.topic FROM supabase_push.event_topics e
$$;

-- The cursor of the newest change (or the retention horizon, if newer; 0:0 for an empty
-- log): where a reader that wants only what comes next starts. Same rights as above.
CREATE OR REPLACE FUNCTION public.supabase_push_head()
RETURNS TABLE (seq bigint, id bigint)
LANGUAGE sql
STABLE
SET search_path = ''
AS $$
    SELECT h.seq, h.id FROM (
        (SELECT t.seq, (SELECT pg_catalog.max(l.id) FROM supabase_push.change_log l
                        WHERE l.txid = t.txid AND l.id BETWEEN t.first_id AND t.last_id) AS id
         FROM supabase_push.commits t
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

-- Where a snapshot of the routed tables stands in the log, for a reader that reads them in the
-- same snapshot (a REPEATABLE READ transaction): then every change after the cursor (seq, id) is
-- not in the rows, except those listed in skip (committed before the snapshot, so in the rows,
-- but not yet given a cursor; they get one after it). tables: the routed tables of the topics
-- (NULL: all), to read as they are in this snapshot. Same rights as the readers above.
CREATE OR REPLACE FUNCTION public.supabase_push_snapshot_start(topics text[] DEFAULT NULL)
RETURNS TABLE (seq bigint, id bigint, skip bigint[], tables jsonb, taken_at timestamptz)
LANGUAGE sql
STABLE
SET search_path = ''
AS $$
    SELECT h.seq, h.id,
           ARRAY(SELECT u.id
                 FROM supabase_push.unstamped_v4(supabase_push.stamped_until_v4(), NULL) u
                 WHERE topics IS NULL OR u.topic = ANY (topics)
                 ORDER BY u.id),
           (SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                       'schema', r.schema_name, 'table', r.table_name, 'topic', r.topic)
                   ORDER BY r.topic, r.schema_name, r.table_name), '[]')
            FROM supabase_push.routes r WHERE topics IS NULL OR r.topic = ANY (topics)),
           pg_catalog.now()
    FROM public.supabase_push_head() h
$$;
COMMENT ON FUNCTION public.supabase_push_snapshot_start(text[]) IS
    'supabase-push: the cursor a snapshot of the routed tables, read in the same transaction, stands at';

-- For readers that only have PostgREST, where each call is a transaction of its own: a snapshot
-- is copied, in one statement (so one snapshot), into supabase_push.snapshot_rows under a random
-- id, then read page by page (supabase_push_snapshot_page) and dropped (supabase_push_snapshot_close;
-- copies older than an hour go at the next open). The rows are read with the caller's rights (RLS
-- applies); the id is the only way back to them.
CREATE TABLE IF NOT EXISTS supabase_push.snapshot_rows (
    snapshot_id uuid NOT NULL,
    n bigint NOT NULL,
    topic text NOT NULL,
    schema_name text NOT NULL,
    table_name text NOT NULL,
    record jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (snapshot_id, n)
);

CREATE OR REPLACE FUNCTION supabase_push.forget_snapshots_v3(p_id uuid DEFAULT NULL)
RETURNS void
LANGUAGE sql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
    DELETE FROM supabase_push.snapshot_rows s
    WHERE s.snapshot_id = p_id OR s.created_at < pg_catalog.now() - interval '1 hour'
$$;

-- Returns the snapshot's id, the cursor its rows stand at, the changes to skip and how many rows.
CREATE OR REPLACE FUNCTION public.supabase_push_snapshot_open(topics text[] DEFAULT NULL)
RETURNS TABLE (snapshot_id uuid, seq bigint, id bigint, skip bigint[], taken_at timestamptz, row_count bigint)
LANGUAGE plpgsql
VOLATILE
SET search_path = ''
AS $$
DECLARE
    v_id uuid := pg_catalog.gen_random_uuid();
    v_rows text;
BEGIN
    PERFORM supabase_push.forget_snapshots_v3();
    -- One statement reads the cursor and every table, so all of it sees one snapshot.
    SELECT coalesce(pg_catalog.string_agg(pg_catalog.format(
               'SELECT %L AS topic, %L AS schema_name, %L AS table_name, pg_catalog.to_jsonb(t) AS record FROM %I.%I t',
               r.topic, r.schema_name, r.table_name, r.schema_name, r.table_name), ' UNION ALL '),
           'SELECT NULL::text, NULL::text, NULL::text, NULL::jsonb WHERE false')
    INTO v_rows
    FROM supabase_push.routes r WHERE topics IS NULL OR r.topic = ANY (topics);
    RETURN QUERY EXECUTE pg_catalog.format(
        $q$WITH start AS (SELECT * FROM public.supabase_push_snapshot_start($1)),
                copied AS (INSERT INTO supabase_push.snapshot_rows (snapshot_id, n, topic, schema_name, table_name, record)
                           SELECT %L, pg_catalog.row_number() OVER (), r.topic, r.schema_name, r.table_name, r.record
                           FROM (%s) r
                           RETURNING 1)
           SELECT %L::uuid, start.seq, start.id, start.skip, start.taken_at, (SELECT pg_catalog.count(*) FROM copied)
           FROM start$q$, v_id, v_rows, v_id)
    USING topics;
END
$$;

CREATE OR REPLACE FUNCTION public.supabase_push_snapshot_page(
    snapshot_id uuid, after_n bigint DEFAULT 0, max_rows integer DEFAULT 1000)
RETURNS TABLE (n bigint, topic text, schema_name text, table_name text, record jsonb)
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
    SELECT s.n, s.topic, s.schema_name, s.table_name, s.record FROM supabase_push.snapshot_rows s
    WHERE s.snapshot_id = supabase_push_snapshot_page.snapshot_id AND s.n > after_n
    ORDER BY s.n
    LIMIT max_rows
$$;

CREATE OR REPLACE FUNCTION public.supabase_push_snapshot_close(snapshot_id uuid)
RETURNS void
LANGUAGE sql
VOLATILE
SET search_path = ''
AS $$
    SELECT supabase_push.forget_snapshots_v3(snapshot_id)
$$;

-- On Supabase the service role reads the change log (PostgREST polling); anon and
-- authenticated get nothing unless you grant it.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'service_role') THEN
        GRANT USAGE ON SCHEMA supabase_push TO service_role;
        GRANT SELECT ON supabase_push.change_log, supabase_push.commits, supabase_push.retention,
                        supabase_push.routes, supabase_push.event_topics TO service_role;
        GRANT INSERT ON supabase_push.snapshot_rows TO service_role;
        GRANT EXECUTE ON FUNCTION public.supabase_push_stamp() TO service_role;
        GRANT EXECUTE ON FUNCTION supabase_push.publish(text, text, jsonb, text) TO service_role;
        GRANT EXECUTE ON FUNCTION public.supabase_push_publish(text, text, jsonb, text) TO service_role;
    END IF;
END
$$;

-- Deletes the changes stamped p_keep ago or longer and moves the retention horizon, in one
-- transaction: a reader sees the rows gone and the horizon moved together.
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
    PERFORM pg_catalog.pg_advisory_xact_lock(7218311412069051322);  -- no round runs beside the prune
    PERFORM supabase_push.stamp_v2(true);  -- what has committed is stamped, and may be old enough to go
    SELECT pg_catalog.max(t.seq) INTO v_seq
    FROM supabase_push.commits t
    WHERE t.committed_at <= pg_catalog.now() - p_keep;
    IF v_seq IS NOT NULL THEN
        SELECT coalesce(pg_catalog.max(l.id), 0) INTO v_id
        FROM supabase_push.commits t
        JOIN supabase_push.change_log l ON l.txid = t.txid AND l.id BETWEEN t.first_id AND t.last_id
        WHERE t.seq = v_seq;
        UPDATE supabase_push.retention r
        SET pruned_seq = v_seq, pruned_id = v_id, pruned_at = pg_catalog.now()
        WHERE (r.pruned_seq, r.pruned_id) < (v_seq, v_id);
        WITH gone AS (DELETE FROM supabase_push.commits t WHERE t.seq <= v_seq RETURNING t.txid, t.first_id, t.last_id),
        forgotten AS (DELETE FROM supabase_push.event_keys k USING gone
                      WHERE k.txid = gone.txid AND k.change_id BETWEEN gone.first_id AND gone.last_id)
        DELETE FROM supabase_push.change_log l USING gone
        WHERE l.txid = gone.txid AND l.id BETWEEN gone.first_id AND gone.last_id;
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
           OR p.oid = pg_catalog.to_regprocedure('public.supabase_push_topics()')
           OR p.oid = pg_catalog.to_regprocedure('public.supabase_push_stamp()')
           OR p.oid = pg_catalog.to_regprocedure('public.supabase_push_publish(text,text,jsonb,text)')
           OR p.oid = pg_catalog.to_regprocedure('public.supabase_push_snapshot_start(text[])')
           OR p.oid = pg_catalog.to_regprocedure('public.supabase_push_snapshot_open(text[])')
           OR p.oid = pg_catalog.to_regprocedure('public.supabase_push_snapshot_page(uuid,bigint,integer)')
           OR p.oid = pg_catalog.to_regprocedure('public.supabase_push_snapshot_close(uuid)')
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
-- Whether the table's changes reach Realtime's postgres_changes: it is in publication supabase_realtime
-- as pg_publication_tables lists it, or itself or a partitioned table above it was added (a partitioned
-- table, published, is listed as its partitions: schema 8 added it again at every apply, which failed).
-- `supabase-push verify` asks the same.
CREATE OR REPLACE FUNCTION supabase_push.published_v1(p_relid oid)
RETURNS boolean
LANGUAGE sql
STABLE
SET search_path = ''
AS $$
    SELECT EXISTS (SELECT FROM pg_catalog.pg_publication_tables t
                   WHERE t.pubname = 'supabase_realtime'
                     AND (t.schemaname, t.tablename) = (SELECT n.nspname, c.relname
                                                        FROM pg_catalog.pg_class c
                                                        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                                                        WHERE c.oid = p_relid))
        OR EXISTS (SELECT FROM pg_catalog.pg_publication_rel r
                   JOIN pg_catalog.pg_publication p ON p.oid = r.prpubid
                   WHERE p.pubname = 'supabase_realtime'
                     AND r.prrelid IN (SELECT a.relid FROM pg_catalog.pg_partition_ancestors(p_relid) a))
$$;

-- What a routed table's triggers call, and their arguments as pg_trigger.tgargs holds them: the topic,
-- and for a partitioned table its schema and name (capture_partitioned_change_v1). `supabase-push
-- verify` asks the same.
CREATE OR REPLACE FUNCTION supabase_push.trigger_call_v1(p_relid oid, p_topic text,
                                                         OUT function regprocedure, OUT args bytea)
LANGUAGE sql
STABLE
SET search_path = ''
AS $$
    SELECT CASE WHEN c.relkind = 'p' THEN 'supabase_push.capture_partitioned_change_v1()'::pg_catalog.regprocedure
                ELSE 'supabase_push.capture_change_v1()'::pg_catalog.regprocedure END,
           pg_catalog.convert_to(p_topic, 'UTF8') || '\x00'::bytea
           || CASE WHEN c.relkind = 'p'
                   THEN pg_catalog.convert_to(n.nspname, 'UTF8') || '\x00'::bytea
                        || pg_catalog.convert_to(c.relname, 'UTF8') || '\x00'::bytea
                   ELSE ''::bytea END
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.oid = p_relid
$$;

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
    v_partitioned boolean;
    v_what text;
    v_trigger text;
    v_old_trigger text;
    v_added boolean;
    v_created_publication boolean := false;
    v_all_tables boolean;
    v_wanted text[] := '{}';
    v_deferrable text;
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
        SELECT c.oid, c.relkind = 'p' INTO v_relid, v_partitioned
        FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = v_schema AND c.relname = v_table AND c.relkind IN ('r', 'p');
        IF NOT FOUND THEN
            SELECT CASE c.relkind WHEN 'v' THEN 'a view' WHEN 'm' THEN 'a materialized view'
                                  WHEN 'f' THEN 'a foreign table' WHEN 'S' THEN 'a sequence' ELSE 'not a table' END
            INTO v_what
            FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = v_schema AND c.relname = v_table;
            IF FOUND THEN
                RAISE EXCEPTION 'supabase_push: %.% is %: a route is a table', pg_catalog.quote_ident(v_schema),
                    pg_catalog.quote_ident(v_table), v_what
                    USING ERRCODE = 'wrong_object_type',
                          HINT = 'Route the tables it reads: their changes are what it shows.';
            END IF;
            RAISE EXCEPTION 'supabase_push: table %.% does not exist', pg_catalog.quote_ident(v_schema), pg_catalog.quote_ident(v_table)
                USING ERRCODE = 'undefined_table',
                      HINT = 'Create it first (supabase-push apply --create-tables creates the reference trading tables), or route another table.';
        END IF;
        -- A deferred unique check lets a second writer change a key without waiting for the first
        -- to commit, which is what the stamper's commit order rests on (stamp_v2).
        SELECT pg_catalog.string_agg(pg_catalog.quote_ident(co.conname), ', ') INTO v_deferrable
        FROM pg_catalog.pg_constraint co
        WHERE co.conrelid = v_relid AND co.condeferrable AND co.contype IN ('p', 'u', 'x');
        IF v_deferrable IS NOT NULL THEN
            RAISE EXCEPTION 'supabase_push: %.% has DEFERRABLE unique, primary key or exclusion constraints (%): '
                'the change log cannot order its changes exactly', pg_catalog.quote_ident(v_schema),
                pg_catalog.quote_ident(v_table), v_deferrable
                USING ERRCODE = 'feature_not_supported',
                      HINT = 'Recreate them NOT DEFERRABLE, or leave this table out of the routes.';
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
        IF NOT v_all_tables AND NOT supabase_push.published_v1(v_relid) THEN
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
                SELECT FROM pg_catalog.pg_trigger t, supabase_push.trigger_call_v1(v_relid, v_route.topic) call
                WHERE t.tgrelid = v_relid AND t.tgname = v_kind.name
                  AND t.tgfoid = call.function
                  AND t.tgtype = v_kind.tgtype
                  AND t.tgenabled = 'O'
                  AND t.tgargs = call.args
            ) THEN
                EXECUTE pg_catalog.format(
                    'CREATE OR REPLACE TRIGGER %I AFTER %s ON %I.%I FOR EACH %s EXECUTE FUNCTION %s',
                    v_kind.name, v_kind.events, v_schema, v_table, v_kind.level,
                    CASE WHEN v_partitioned
                         THEN pg_catalog.format('supabase_push.capture_partitioned_change_v1(%L, %L, %L)',
                                                v_route.topic, v_schema, v_table)
                         ELSE pg_catalog.format('supabase_push.capture_change_v1(%L)', v_route.topic) END);
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
    VALUES (9, supabase_push.fingerprint_v1(), p_broadcast_mode, p_private_broadcast, v_created_publication)
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

-- Declares the topics that take events besides the routed tables' (supabase_push.publish): the
-- list replaces the declared one; NULL (the file pasted as is) leaves it as it is.
CREATE OR REPLACE FUNCTION supabase_push.declare_event_topics_v1(p_topics jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    v_topics text[];
    v_bad text;
BEGIN
    IF p_topics IS NULL THEN
        RETURN;
    END IF;
    IF pg_catalog.jsonb_typeof(p_topics) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'supabase_push: event topics must be a JSON array, got %', p_topics;
    END IF;
    v_topics := ARRAY(SELECT pg_catalog.jsonb_array_elements_text(p_topics));
    SELECT t INTO v_bad FROM pg_catalog.unnest(v_topics) t WHERE t !~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$' LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'supabase_push: % is not a topic name', pg_catalog.quote_literal(v_bad)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Up to 100 letters, digits, _ . : - (starting with a letter or digit).';
    END IF;
    DELETE FROM supabase_push.event_topics t WHERE NOT t.topic = ANY (v_topics);
    INSERT INTO supabase_push.event_topics (topic) SELECT DISTINCT t FROM pg_catalog.unnest(v_topics) t
    ON CONFLICT (topic) DO NOTHING;
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
SELECT supabase_push.declare_event_topics_v1(
    nullif(pg_catalog.current_setting('supabase_push.event_topics', true), '')::jsonb);

COMMIT;
