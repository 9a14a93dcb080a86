-- supabase-push schema 4 -> 5: cheaper stamping rounds, whatever the log's size and statistics.
--
-- Version 5 changes no table. The install script replaces functions: a round's push step looks each
-- commit's changes up by index (schema 4's join let the generic plan of a long stamping loop hash
-- the whole change log once the commits table was large: 68 ms a round at 80k commits); no step of
-- a round is JIT-compiled (10 ms a round once the log had outgrown its statistics); the stamping
-- loop skips a round when the cluster's snapshot has not moved, pauses longer under load (up to
-- 10 x p_fast_ms), and sleeps what it is asked (pg_sleep doubled a 1 ms pause); a read by cursor
-- (supabase_push_changes) is planned once per session instead of on every call. Nothing moves and no
-- writer waits. `supabase-push apply` runs this file and the install script in one transaction. By
-- hand:
--     psql -v ON_ERROR_STOP=1 -1 -f 0005_pre_cheaper_rounds.sql -f ../realtime_triggers.sql

BEGIN;

SELECT pg_advisory_xact_lock(7218311412069051321);

DO $$
DECLARE
    v_version integer;
BEGIN
    SELECT schema_version INTO v_version FROM supabase_push.installation;
    IF v_version IS DISTINCT FROM 4 THEN
        RAISE EXCEPTION 'supabase_push: migration 0005 upgrades schema version 4, this database has %', v_version
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
END
$$;

UPDATE supabase_push.installation SET schema_version = 5, updated_at = pg_catalog.now();

COMMIT;
