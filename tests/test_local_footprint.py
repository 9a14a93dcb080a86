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
