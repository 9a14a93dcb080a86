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
    v_route record;
    v_created_publication boolean;
BEGIN
    IF pg_catalog.to_regclass('supabase_push.routes') IS NULL THEN
        RAISE NOTICE 'supabase_push: not installed, nothing to remove';
    ELSE
        FOR v_route IN SELECT * FROM supabase_push.routes ORDER BY schema_name, table_name LOOP
            CONTINUE WHEN pg_catalog.to_regclass(
                pg_catalog.format('%I.%I', v_route.schema_name, v_route.table_name)) IS NULL;
            EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS %I ON %I.%I',
                v_route.trigger_name, v_route.schema_name, v_route.table_name);
            IF v_route.added_to_publication AND EXISTS (
                SELECT FROM pg_catalog.pg_publication_rel pr
                JOIN pg_catalog.pg_publication p ON p.oid = pr.prpubid
                WHERE p.pubname = 'supabase_realtime'
                  AND pr.prrelid = pg_catalog.format('%I.%I', v_route.schema_name, v_route.table_name)::regclass
            ) THEN
                EXECUTE pg_catalog.format('ALTER PUBLICATION supabase_realtime DROP TABLE %I.%I',
                    v_route.schema_name, v_route.table_name);
            END IF;
        END LOOP;

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
DROP SCHEMA IF EXISTS supabase_push CASCADE;

COMMIT;
