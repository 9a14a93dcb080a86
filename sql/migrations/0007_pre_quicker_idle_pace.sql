-- supabase-push schema 6 -> 7: the stamping loop's quiet pace, 50 ms -> 10 ms.
--
-- Version 7 changes no table. The install script replaces one procedure: stamp_loop_v2's p_idle_ms
-- defaults to 10 instead of 50, so the first change after a quiet second waits 5 ms for a round on
-- average instead of 25 (a loop started with an explicit p_idle_ms, e.g. by pg_cron, keeps its own).
-- Nothing moves and no writer waits. `supabase-push apply` runs this file and the install script in
-- one transaction. By hand:
--     psql -v ON_ERROR_STOP=1 -1 -f 0007_pre_quicker_idle_pace.sql -f ../realtime_triggers.sql

BEGIN;

SELECT pg_advisory_xact_lock(7218311412069051321);

DO $$
DECLARE
    v_version integer;
BEGIN
    SELECT schema_version INTO v_version FROM supabase_push.installation;
    IF v_version IS DISTINCT FROM 6 THEN
        RAISE EXCEPTION 'supabase_push: migration 0007 upgrades schema version 6, this database has %', v_version
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
END
$$;

UPDATE supabase_push.installation SET schema_version = 7, updated_at = pg_catalog.now();

COMMIT;
