-- supabase-push local Realtime server: the database side of Supabase Realtime, for plain
-- Postgres. `supabase-push serve` runs this at start; it is idempotent and changes nothing on
-- a database that already has these objects (hosted Supabase has them all).
--
--   * roles anon, authenticated, service_role (NOLOGIN; service_role bypasses RLS), as on Supabase;
--   * realtime.messages, partitioned by day on inserted_at, RLS enabled: the policies on it
--     decide who may read (join) and write (broadcast) private channels;
--   * realtime.topic(), realtime.send(), realtime.broadcast_changes() with Supabase's
--     semantics: private by default, `id` injected into the payload, errors in send() are
--     only warnings;
--   * realtime.maintain_message_partitions(): partitions from yesterday to today+3, older
--     than three days dropped (the server calls it at start and daily);
--   * publications supabase_realtime (tables for postgres_changes, created empty if absent)
--     and supabase_realtime_messages_publication (realtime.messages);
--   * auth.uid(), auth.role(), auth.jwt() where missing, for policies written for Supabase;
--   * auth.users and auth.refresh_tokens where missing: the users of the server's /auth/v1
--     (a subset of the columns Supabase's auth.users has, so foreign keys to auth.users(id) work);
--   * supabase_push_local.created: which of the objects above this script created (not the
--     ones that were already there), so `supabase-push serve --clean` removes exactly those.
--
-- On a database it did not create, `supabase-push serve` runs this only when asked
-- (--install-realtime): once realtime.send() exists, triggers applied in broadcast mode
-- `auto` push through it instead of NOTIFY.

BEGIN;
SELECT pg_advisory_xact_lock(7218311412069051323);

CREATE SCHEMA IF NOT EXISTS supabase_push_local;
COMMENT ON SCHEMA supabase_push_local IS
    'supabase-push local server: what it added to this database (supabase-push serve --clean removes it)';
CREATE TABLE IF NOT EXISTS supabase_push_local.created (
    kind text NOT NULL,
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, name)
);

-- The objects this script may create that exist now.
CREATE OR REPLACE FUNCTION supabase_push_local.present()
RETURNS TABLE (kind text, name text)
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT o.kind, o.name FROM (VALUES
        ('role', 'anon'), ('role', 'authenticated'), ('role', 'service_role'),
        ('schema', 'realtime'), ('schema', 'auth'),
        ('table', 'realtime.messages'),
        ('function', 'realtime.topic()'),
        ('function', 'realtime.send(jsonb,text,text,boolean)'),
        ('function', 'realtime.broadcast_changes(text,text,text,text,text,record,record,text)'),
        ('function', 'realtime.maintain_message_partitions(date)'),
        ('function', 'auth.jwt()'), ('function', 'auth.uid()'), ('function', 'auth.role()'),
        ('table', 'auth.users'), ('table', 'auth.refresh_tokens'),
        ('publication', 'supabase_realtime'), ('publication', 'supabase_realtime_messages_publication')
    ) AS o (kind, name)
    WHERE CASE o.kind
        WHEN 'role' THEN EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.rolname = o.name)
        WHEN 'schema' THEN EXISTS (SELECT FROM pg_catalog.pg_namespace n WHERE n.nspname = o.name)
        WHEN 'table' THEN pg_catalog.to_regclass(o.name) IS NOT NULL
        WHEN 'function' THEN pg_catalog.to_regprocedure(o.name) IS NOT NULL
        WHEN 'publication' THEN EXISTS (SELECT FROM pg_catalog.pg_publication p WHERE p.pubname = o.name)
    END
$$;

CREATE TEMPORARY TABLE supabase_push_local_before ON COMMIT DROP AS
    SELECT kind, name FROM supabase_push_local.present();

DO $roles$
DECLARE
    v_role text;
BEGIN
    FOREACH v_role IN ARRAY ARRAY['anon', 'authenticated', 'service_role'] LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = v_role) THEN
            EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', v_role);
            IF v_role = 'service_role' THEN
                ALTER ROLE service_role BYPASSRLS;
            END IF;
        END IF;
        -- SET ROLE to the JWT's role needs membership unless we are a superuser.
        IF NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = CURRENT_USER) THEN
            BEGIN
                EXECUTE pg_catalog.format('GRANT %I TO %I', v_role, CURRENT_USER);
            EXCEPTION WHEN insufficient_privilege THEN
                RAISE WARNING 'supabase-push: cannot grant role % to %; private channels will be refused', v_role, CURRENT_USER;
            END;
        END IF;
    END LOOP;
END
$roles$;

CREATE SCHEMA IF NOT EXISTS realtime;
GRANT USAGE ON SCHEMA realtime TO anon, authenticated, service_role;

CREATE TABLE IF NOT EXISTS realtime.messages (
    topic text NOT NULL,
    extension text NOT NULL,
    payload jsonb,
    event text,
    private boolean DEFAULT false,
    updated_at timestamp without time zone NOT NULL DEFAULT now(),
    inserted_at timestamp without time zone NOT NULL DEFAULT now(),
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    PRIMARY KEY (id, inserted_at)
) PARTITION BY RANGE (inserted_at);
CREATE INDEX IF NOT EXISTS messages_inserted_at_topic_index
    ON realtime.messages (inserted_at DESC, topic) WHERE extension = 'broadcast' AND private IS TRUE;
ALTER TABLE realtime.messages ENABLE ROW LEVEL SECURITY;
GRANT SELECT, INSERT, UPDATE ON realtime.messages TO anon, authenticated, service_role;

CREATE OR REPLACE FUNCTION realtime.topic() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT nullif(pg_catalog.current_setting('realtime.topic', true), '')
$$;

CREATE OR REPLACE FUNCTION realtime.send(payload jsonb, event text, topic text, private boolean DEFAULT true)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_id uuid := pg_catalog.gen_random_uuid();
    v_payload jsonb := payload;
BEGIN
    BEGIN
        IF NOT (v_payload ? 'id') THEN
            v_payload := pg_catalog.jsonb_set(v_payload, '{id}', pg_catalog.to_jsonb(v_id));
        END IF;
        PERFORM pg_catalog.set_config('realtime.topic', topic, true);
        INSERT INTO realtime.messages (id, payload, event, topic, private, extension)
        VALUES (v_id, v_payload, event, topic, private, 'broadcast');
    EXCEPTION WHEN OTHERS THEN
        -- As on Supabase: a broadcast that cannot be written never aborts the caller.
        RAISE WARNING 'WarnSendingBroadcastMessage: %', SQLERRM;
    END;
END
$$;

CREATE OR REPLACE FUNCTION realtime.broadcast_changes(
    topic_name text, event_name text, operation text, table_name text, table_schema text,
    new record, old record, level text DEFAULT 'ROW'
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_row jsonb;
BEGIN
    IF level = 'STATEMENT' THEN
        RAISE EXCEPTION 'function can only be triggered for each row, not for each statement';
    END IF;
    IF operation NOT IN ('INSERT', 'UPDATE', 'DELETE') THEN
        RAISE EXCEPTION 'Unexpected operation type: %', operation;
    END IF;
    v_row := pg_catalog.jsonb_build_object(
        'old_record', CASE WHEN operation IN ('UPDATE', 'DELETE') THEN pg_catalog.to_jsonb(old) END,
        'record', CASE WHEN operation IN ('INSERT', 'UPDATE') THEN pg_catalog.to_jsonb(new) END,
        'operation', operation, 'table', table_name, 'schema', table_schema);
    PERFORM realtime.send(v_row, event_name, topic_name);
EXCEPTION WHEN OTHERS THEN
    RAISE EXCEPTION 'Failed to process the row: %', SQLERRM;
END
$$;

CREATE OR REPLACE FUNCTION realtime.maintain_message_partitions(p_today date DEFAULT CURRENT_DATE)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_day date;
    v_part record;
BEGIN
    FOR v_day IN SELECT pg_catalog.generate_series(p_today - 1, p_today + 3, interval '1 day')::date LOOP
        EXECUTE pg_catalog.format(
            'CREATE TABLE IF NOT EXISTS realtime.%I PARTITION OF realtime.messages FOR VALUES FROM (%L) TO (%L)',
            'messages_' || pg_catalog.to_char(v_day, 'YYYY_MM_DD'), v_day, v_day + 1);
    END LOOP;
    -- Retention: three days, as on Supabase.
    FOR v_part IN
        SELECT c.relname FROM pg_catalog.pg_inherits i
        JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'realtime.messages'::regclass
          AND c.relname ~ '^messages_\d{4}_\d{2}_\d{2}$'
          AND pg_catalog.to_date(pg_catalog.substr(c.relname, 10), 'YYYY_MM_DD') < p_today - 3
    LOOP
        EXECUTE pg_catalog.format('DROP TABLE realtime.%I', v_part.relname);
    END LOOP;
END
$$;
SELECT realtime.maintain_message_partitions();

DO $publications$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_publication WHERE pubname = 'supabase_realtime') THEN
        CREATE PUBLICATION supabase_realtime;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_publication WHERE pubname = 'supabase_realtime_messages_publication') THEN
        CREATE PUBLICATION supabase_realtime_messages_publication FOR TABLE realtime.messages
            WITH (publish = 'insert', publish_via_partition_root = true);
    END IF;
END
$publications$;

CREATE SCHEMA IF NOT EXISTS auth;
GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role;
DO $auth$
BEGIN
    IF pg_catalog.to_regprocedure('auth.jwt()') IS NULL THEN
        CREATE FUNCTION auth.jwt() RETURNS jsonb LANGUAGE sql STABLE AS $f$
            SELECT coalesce(
                nullif(pg_catalog.current_setting('request.jwt.claims', true), ''), '{}')::jsonb
        $f$;
    END IF;
    IF pg_catalog.to_regprocedure('auth.uid()') IS NULL THEN
        CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS $f$
            SELECT nullif(auth.jwt() ->> 'sub', '')::uuid
        $f$;
    END IF;
    IF pg_catalog.to_regprocedure('auth.role()') IS NULL THEN
        CREATE FUNCTION auth.role() RETURNS text LANGUAGE sql STABLE AS $f$
            SELECT auth.jwt() ->> 'role'
        $f$;
    END IF;
END
$auth$;

CREATE TABLE IF NOT EXISTS auth.users (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    aud text NOT NULL DEFAULT 'authenticated',
    role text NOT NULL DEFAULT 'authenticated',
    email text UNIQUE,
    encrypted_password text,
    is_anonymous boolean NOT NULL DEFAULT false,
    raw_app_meta_data jsonb NOT NULL DEFAULT '{}',
    raw_user_meta_data jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    last_sign_in_at timestamptz
);
CREATE TABLE IF NOT EXISTS auth.refresh_tokens (
    token text PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
    session_id uuid NOT NULL,
    revoked boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO supabase_push_local.created (kind, name)
SELECT kind, name FROM supabase_push_local.present()
EXCEPT SELECT kind, name FROM supabase_push_local_before
ON CONFLICT DO NOTHING;

COMMIT;
