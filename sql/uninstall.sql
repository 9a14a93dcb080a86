-- supabase-push: remove everything sql/realtime_triggers.sql installed.
--
-- Drops the triggers, the change log and the supabase_push schema, and takes out of
-- publication supabase_realtime only the tables that the install added (dropping the
-- publication only if the install created it and it is now empty). Your tables and
-- their rows are never touched. One transaction; safe to run when nothing is installed.

BEGIN;

SELECT pg_advisory_xact_lock(7218311412069051321);

DO $$
DECLARE
    v_created_publication boolean;
BEGIN
    IF pg_catalog.to_regclass('supabase_push.routes') IS NULL THEN
        RAISE NOTICE 'supabase_push: not installed, nothing to remove';
    ELSE
        PERFORM supabase_push.drop_route_v1(schema_name, table_name)
        FROM supabase_push.routes ORDER BY schema_name, table_name;

        SELECT created_publication INTO v_created_publication FROM supabase_push.installation;
        IF v_created_publication AND EXISTS (
            SELECT FROM pg_catalog.pg_publication p
            WHERE p.pubname = 'supabase_realtime' AND NOT p.puballtables
              AND NOT EXISTS (SELECT FROM pg_catalog.pg_publication_rel pr WHERE pr.prpubid = p.oid)
              AND NOT EXISTS (SELECT FROM pg_catalog.pg_publication_namespace pn WHERE pn.pnpubid = p.oid)
        ) THEN
            DROP PUBLICATION supabase_realtime;
        END IF;
    END IF;
END
$$;

DROP FUNCTION IF EXISTS public.supabase_push_changes(bigint, bigint, integer, text[]);
DROP FUNCTION IF EXISTS public.supabase_push_head();
DROP FUNCTION IF EXISTS public.supabase_push_stamp();
DROP FUNCTION IF EXISTS public.supabase_push_publish(text, text, jsonb, text);
DROP FUNCTION IF EXISTS public.supabase_push_snapshot_start(text[]);
DROP FUNCTION IF EXISTS public.supabase_push_snapshot_open(text[]);
DROP FUNCTION IF EXISTS public.supabase_push_snapshot_page(uuid, bigint, integer);
DROP FUNCTION IF EXISTS public.supabase_push_snapshot_close(uuid);
DROP SCHEMA IF EXISTS supabase_push CASCADE;

COMMIT;
