-- supabase-push schema 8 -> 9: partitioned tables as routes; the topics a subscriber can ask for.
--
-- Version 9 changes no table. The install script adds capture_partitioned_change_v1, which a
-- partitioned table's triggers call (its partitions run clones of them): it logs each change under
-- the routed table's name, where version 8 logged the partition's. install_v1 now sees a published
-- partitioned table as published (pg_publication_tables lists it as its partitions: version 8 added it
-- to supabase_realtime again at every apply after the first, which failed). `apply` then re-creates
-- a partitioned route's triggers; other routes' triggers stay as they are. It also adds
-- public.supabase_push_topics() (the routed and declared topics, for the service role), which a
-- subscriber asks at start to name a topic nothing arrives on. Nothing moves and no writer waits.
-- `supabase-push apply` runs this file and the install script in one transaction. By hand:
--     psql -v ON_ERROR_STOP=1 -1 -f 0009_pre_partitioned_routes.sql -f ../realtime_triggers.sql

BEGIN;

SELECT pg_advisory_xact_lock(7218311412069051321);

DO $$
DECLARE
    v_version integer;
BEGIN
    SELECT schema_version INTO v_version FROM supabase_push.installation;
    IF v_version IS DISTINCT FROM 8 THEN
        RAISE EXCEPTION 'supabase_push: migration 0009 upgrades schema version 8, this database has %', v_version
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
END
$$;

UPDATE supabase_push.installation SET schema_version = 9, updated_at = pg_catalog.now();

COMMIT;
