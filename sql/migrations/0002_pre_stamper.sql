-- supabase-push schema 1 -> 2, part 1 of 2: commit order by a stamper after commit.
--
-- Version 1 stamped each transaction at its commit under one lock, so tracked commits ran one
-- at a time. Version 2's writers only append; supabase_push.stamp_v2() orders them afterwards.
-- `supabase-push apply` runs this file and sql/realtime_triggers.sql in one transaction, then
-- 0002_post_stamper.sql in another. By hand:
--     psql -v ON_ERROR_STOP=1 -1 -f 0002_pre_stamper.sql -f ../realtime_triggers.sql
--     psql -v ON_ERROR_STOP=1 -f 0002_post_stamper.sql
-- Writers keep writing: those that commit while this runs wait for it (a few milliseconds
-- per thousand transactions in the log), and none of their changes is lost or duplicated.

BEGIN;

SELECT pg_advisory_xact_lock(7218311412069051321);

DO $$
DECLARE
    v_version integer;
BEGIN
    SELECT schema_version INTO v_version FROM supabase_push.installation;
    IF v_version IS DISTINCT FROM 1 THEN
        RAISE EXCEPTION 'supabase_push: migration 0002 upgrades schema version 1, this database has %', v_version
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
END
$$;

-- Every version-1 writer with changes holds change_txn (its first change inserts a row there),
-- so once this lock is granted, every one of them has committed, stamped under version 1's
-- rules, or has not logged anything yet (and then waits here, and logs under version 2's).
LOCK TABLE supabase_push.change_txn IN ACCESS EXCLUSIVE MODE;

CREATE TABLE supabase_push.commits (
    seq bigint PRIMARY KEY,
    txid xid8 NOT NULL,
    first_id bigint NOT NULL,
    last_id bigint NOT NULL,
    committed_at timestamptz NOT NULL,
    snapshot pg_snapshot,
    system_identifier bigint,
    heads jsonb
);
CREATE INDEX commits_txid_idx ON supabase_push.commits (txid);

-- Version 1's stamps, as they are: the same seq, so every cursor held by a subscriber (a
-- cursor file, an SSE Last-Event-ID) means the same place. A version-1 txid was unique in its
-- cluster; its changes are all below the change log's identity as it stands now.
INSERT INTO supabase_push.commits (seq, txid, first_id, last_id, committed_at)
SELECT t.seq, t.txid, 0,
       (SELECT coalesce(s.last_value, 0) FROM supabase_push.change_log_id_seq s),
       coalesce(t.committed_at, pg_catalog.now())
FROM supabase_push.change_txn t
WHERE t.seq IS NOT NULL;

-- Where the stamper starts: every transaction visible now is stamped (above); the rest are in
-- progress or to come.
UPDATE supabase_push.commits
SET snapshot = pg_catalog.pg_current_snapshot(),
    system_identifier = (pg_catalog.pg_control_system()).system_identifier,
    heads = (SELECT coalesce(pg_catalog.jsonb_object_agg(h.topic, h.head), '{}') FROM supabase_push.topic_heads h)
WHERE seq = (SELECT pg_catalog.max(seq) FROM supabase_push.commits);

-- Writers stop stamping at commit. The capture function itself is replaced by
-- realtime_triggers.sql in this same transaction.
DROP TRIGGER stamp_commit ON supabase_push.change_txn;
-- 0002_post_stamper.sql drops the table once no statement older than this transaction runs.
DO $$
BEGIN
    EXECUTE pg_catalog.format('COMMENT ON TABLE supabase_push.change_txn IS %L',
        'supabase-push: retired by schema 2 in transaction ' || pg_catalog.pg_current_xact_id()::text);
END
$$;
DROP FUNCTION supabase_push.stamp_commit_v1();
DROP FUNCTION supabase_push.publish_v1(xid8, bigint, timestamp with time zone);
DROP TABLE supabase_push.topic_heads;

UPDATE supabase_push.installation SET schema_version = 2, updated_at = pg_catalog.now();

COMMIT;
