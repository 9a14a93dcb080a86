-- supabase-push schema 5 -> 6: cheaper rounds, each change's envelope and the push paths planned once.
--
-- Version 6 changes no table. The install script replaces two functions: envelope_v1 (each change's
-- envelope) and broadcast_paths_v1 (the paths a broadcast mode takes) lose their SET search_path
-- clause, which kept the planner from inlining them and had each call planned again (80 us of a
-- 470 us stamping round; each change's envelope on the Supabase path took twice as long), and name
-- every operator with its schema instead. Nothing moves and no writer waits. `supabase-push apply`
-- runs this file and the install script in one transaction. By hand:
--     psql -v ON_ERROR_STOP=1 -1 -f 0006_pre_inlined_helpers.sql -f ../realtime_triggers.sql

BEGIN;

SELECT pg_advisory_xact_lock(7218311412069051321);

DO $$
DECLARE
    v_version integer;
BEGIN
    SELECT schema_version INTO v_version FROM supabase_push.installation;
    IF v_version IS DISTINCT FROM 5 THEN
        RAISE EXCEPTION 'supabase_push: migration 0006 upgrades schema version 5, this database has %', v_version
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
END
$$;

UPDATE supabase_push.installation SET schema_version = 6, updated_at = pg_catalog.now();

COMMIT;
