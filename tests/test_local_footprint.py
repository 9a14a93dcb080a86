"""What the local server adds to a database (``footprint``): planned without a trace, recorded, taken back."""

from __future__ import annotations

import psycopg

from supabase_push.local import footprint


def test_plan_changes_nothing_and_install_records_what_it_created(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        would = footprint.plan(conn)
        assert "schema realtime" in would and "function realtime.send(jsonb,text,text,boolean)" in would
        assert footprint.inspect(conn) == footprint.Footprint(realtime=False, recorded=[])
        added = footprint.install(conn)
        assert added == would
        assert footprint.inspect(conn).recorded == sorted(added)
        assert footprint.install(conn) == []  # run again: nothing new, the record stays
        assert footprint.inspect(conn).recorded == sorted(added)


def test_clean_keeps_what_your_objects_now_depend_on(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        footprint.install(conn)
        conn.execute("ALTER TABLE positions ADD COLUMN owner uuid")
        conn.execute("CREATE POLICY own ON positions USING (owner = auth.uid())")
        removals = {r.name: r for r in footprint.clean(conn)}
        assert removals["schema realtime"].removed
        assert not removals["function auth.uid()"].removed and "policy" in removals["function auth.uid()"].detail
        assert not removals["schema auth"].removed
        assert conn.execute("SELECT count(*) FROM pg_policies WHERE policyname = 'own'").fetchone() == (1,)
        # what was kept stays on the record: once the policy is gone, a second clean takes it
        assert footprint.inspect(conn).recorded == ["function auth.uid()", "schema auth"]
        conn.execute("DROP POLICY own ON positions")
        assert all(r.removed for r in footprint.clean(conn))
        assert footprint.inspect(conn) == footprint.Footprint(realtime=False, recorded=[])


def test_roles_it_created_go_unless_something_was_granted_to_them_since() -> None:
    """On a cluster of its own (roles are cluster-wide): anon and authenticated go; service_role, which
    `apply` has since granted the change log to, is kept and the grant named."""
    from supabase_push import schema
    from supabase_push._sql import REFERENCE_TABLES, read_sql
    from supabase_push.embedded import LocalPostgres

    roles = "SELECT rolname FROM pg_roles WHERE rolname IN ('anon', 'authenticated', 'service_role') ORDER BY 1"
    with LocalPostgres() as pg, psycopg.connect(pg.dsn, autocommit=True) as conn:
        assert conn.execute(roles).fetchall() == []
        conn.execute(read_sql(REFERENCE_TABLES).encode())
        assert {"role anon", "role authenticated", "role service_role"} <= set(footprint.install(conn))
        schema.apply(conn)
        removals = {r.name: r for r in footprint.clean(conn)}
        assert removals["role anon"].removed and removals["role authenticated"].removed
        kept = removals["role service_role"]
        assert not kept.removed and "supabase_push" in kept.detail, kept
        assert conn.execute(roles).fetchall() == [("service_role",)]
        assert footprint.inspect(conn).recorded == ["role service_role"]
        [drift] = [c for c in schema.verify(conn).problems if c.name == "push path"]
        assert "realtime.send() is gone" in drift.detail  # applied on the realtime path: said, not silent
        schema.apply(conn)
        assert schema.verify(conn).ok  # NOTIFY from now on
