-- supabase-push schema 3 -> 4: the stamper finds new transactions by index, whatever the size of the log.
--
-- Version 4 changes no table: the stamper's round, pending_v2() and supabase_push_snapshot_start()
-- now ask one function for the changes without a cursor (supabase_push.unstamped_v4(), with
-- stamped_until_v4()), which looks them up by index. In version 3 the round's single query let the
-- planner scan the whole change log on every round once it had grown (about 11 ms a round at 200k
-- changes, in parallel workers), and its cost grew with the log. The install script replaces the
-- functions; nothing moves and no writer waits. `supabase-push apply` runs this file and the install
-- script in one transaction. By hand:
--     psql -v ON_ERROR_STOP=1 -1 -f 0004_pre_indexed_rounds.sql -f ../realtime_triggers.sql

BEGIN;

SELECT pg_advisory_xact_lock(7218311412069051321);

DO $$
DECLARE
    v_version integer;
BEGIN
    SELECT schema_version INTO v_version FROM supabase_push.installation;
    IF v_version IS DISTINCT FROM 3 THEN
        RAISE EXCEPTION 'supabase_push: migration 0004 upgrades schema version 3, this database has %', v_version
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
END
$$;

UPDATE supabase_push.installation SET schema_version = 4, updated_at = pg_catalog.now();

COMMIT;
