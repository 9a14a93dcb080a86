-- supabase-push schema 1 -> 2, part 2 of 2: drop what version 1 used to stamp commits.
--
-- Not in part 1's transaction: a statement that began before part 1 committed (an UPDATE
-- waiting for a row lock, say) may still run version 1's capture function, which inserts into
-- change_txn, and would fail if the table were gone. So this waits (up to 30 s) until no
-- statement that old is running; if one still is, the table stays and the next apply drops it.

BEGIN;

SELECT pg_advisory_xact_lock(7218311412069051321);

DO $$
DECLARE
    v_retired text;
    v_xid xid;
    v_deadline timestamptz := pg_catalog.clock_timestamp() + interval '30 seconds';
BEGIN
    IF pg_catalog.to_regclass('supabase_push.change_txn') IS NULL THEN
        RETURN;
    END IF;
    v_retired := pg_catalog.substring(pg_catalog.obj_description('supabase_push.change_txn'::regclass, 'pg_class'),
                                      'retired by schema 2 in transaction ([0-9]+)');
    IF v_retired IS NULL THEN
        RAISE EXCEPTION 'supabase_push: change_txn is not marked as retired; run 0002_pre_stamper.sql first';
    END IF;
    v_xid := (v_retired::numeric % 4294967296)::text::xid;
    LOOP
        PERFORM pg_catalog.pg_stat_clear_snapshot();
        EXIT WHEN NOT EXISTS (
            SELECT FROM pg_catalog.pg_stat_activity a
            WHERE a.datname = pg_catalog.current_database() AND a.pid <> pg_catalog.pg_backend_pid()
              AND a.backend_type = 'client backend' AND a.backend_xmin IS NOT NULL
              AND pg_catalog.age(a.backend_xmin) >= pg_catalog.age(v_xid));
        IF pg_catalog.clock_timestamp() > v_deadline THEN
            RAISE NOTICE 'supabase_push: a statement older than the upgrade still runs; supabase_push.change_txn '
                         'stays until the next apply';
            RETURN;
        END IF;
        PERFORM pg_catalog.pg_sleep(0.05);
    END LOOP;
    DROP TABLE supabase_push.change_txn;
    DROP SEQUENCE IF EXISTS supabase_push.commit_seq;
END
$$;

COMMIT;
