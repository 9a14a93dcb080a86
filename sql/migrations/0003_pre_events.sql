-- supabase-push schema 2 -> 3: events from services (supabase_push.publish) and snapshots.
--
-- Version 3 only adds: the tables event_topics, event_keys and snapshot_rows and the functions
-- supabase_push.publish(), public.supabase_push_publish(), public.supabase_push_snapshot_start()
-- and the snapshot_open/_page/_close trio, all created by sql/realtime_triggers.sql. Nothing that exists changes shape, so nothing moves here and no
-- writer waits: an event is a change_log row like any other (op 'EVENT'), read by the same
-- supabase_push_changes(). `supabase-push apply` runs this file and the install script in one
-- transaction. By hand:
--     psql -v ON_ERROR_STOP=1 -1 -f 0003_pre_events.sql -f ../realtime_triggers.sql

BEGIN;

SELECT pg_advisory_xact_lock(7218311412069051321);

DO $$
DECLARE
    v_version integer;
BEGIN
    SELECT schema_version INTO v_version FROM supabase_push.installation;
    IF v_version IS DISTINCT FROM 2 THEN
        RAISE EXCEPTION 'supabase_push: migration 0003 upgrades schema version 2, this database has %', v_version
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
END
$$;

UPDATE supabase_push.installation SET schema_version = 3, updated_at = pg_catalog.now();

COMMIT;
