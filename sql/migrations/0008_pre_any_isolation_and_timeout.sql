-- supabase-push schema 7 -> 8: the stamping loop runs under any default isolation and statement_timeout.
--
-- Version 8 changes no table. The install script replaces one procedure: stamp_loop_v2 makes its
-- session's transactions READ COMMITTED where the database or role defaults to REPEATABLE READ or
-- SERIALIZABLE (where version 7 failed at its first round, so nothing was stamped, nor pushed), and
-- returns by itself before a statement_timeout shorter than its run would cancel it (where version
-- 7 was cancelled with an error). Nothing moves and no writer waits. `supabase-push apply` runs this
-- file and the install script in one transaction. By hand:
--     psql -v ON_ERROR_STOP=1 -1 -f 0008_pre_any_isolation_and_timeout.sql -f ../realtime_triggers.sql

BEGIN;

SELECT pg_advisory_xact_lock(7218311412069051321);

DO $$
DECLARE
    v_version integer;
BEGIN
    SELECT schema_version INTO v_version FROM supabase_push.installation;
    IF v_version IS DISTINCT FROM 7 THEN
        RAISE EXCEPTION 'supabase_push: migration 0008 upgrades schema version 7, this database has %', v_version
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
END
$$;

UPDATE supabase_push.installation SET schema_version = 8, updated_at = pg_catalog.now();

COMMIT;
