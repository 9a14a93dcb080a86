"""apply / verify / uninstall / status against a real Postgres."""

from __future__ import annotations

import subprocess
import threading
import time
from typing import Any

import psycopg
import pytest

from supabase_push import schema
from supabase_push._sql import INSTALL, SCHEMA_VERSION, read_sql
from supabase_push.changelog import read_changes, stamp
from supabase_push.errors import ConfigError, DatabaseError, MissingTableError, PermissionDeniedError

ORIGINAL_VERIFY_QUERY = """
SELECT DISTINCT trigger_name, event_object_table FROM information_schema.triggers
WHERE trigger_schema = 'public'
  AND trigger_name IN ('position_change_trigger', 'trade_executed_trigger', 'portfolio_update_trigger')
ORDER BY trigger_name
"""


def catalog_snapshot(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """Everything apply could touch, down to catalog row versions."""
    return {
        "functions": conn.execute(
            "SELECT p.oid, p.xmin::text, p.prosrc FROM pg_proc p "
            "WHERE pronamespace = 'supabase_push'::regnamespace OR proname = 'supabase_push_changes' "
            "ORDER BY p.oid").fetchall(),
        "triggers": conn.execute(
            "SELECT t.oid, t.xmin::text, t.tgname, t.tgenabled FROM pg_trigger t "
            "WHERE NOT t.tgisinternal ORDER BY t.oid").fetchall(),
        "publication": conn.execute(
            "SELECT schemaname, tablename FROM pg_publication_tables "
            "WHERE pubname = 'supabase_realtime' ORDER BY 1, 2").fetchall(),
        "installation": conn.execute("SELECT * FROM supabase_push.installation").fetchall(),
        "routes": conn.execute("SELECT * FROM supabase_push.routes ORDER BY 1, 2").fetchall(),
    }


def test_apply_twice_changes_nothing(conn: psycopg.Connection[Any]) -> None:
    first = schema.apply(conn)
    before = catalog_snapshot(conn)
    second = schema.apply(conn)
    assert first.changed and not second.changed
    after = catalog_snapshot(conn)
    assert after["installation"] == before["installation"]
    assert after["routes"] == before["routes"]
    assert after["publication"] == before["publication"]
    # Same triggers, untouched (same catalog row version); functions keep their identity.
    assert after["triggers"] == before["triggers"]
    assert [f[0] for f in after["functions"]] == [f[0] for f in before["functions"]]
    assert conn.execute(ORIGINAL_VERIFY_QUERY).fetchall() == [
        ("portfolio_update_trigger", "portfolio_snapshots"),
        ("position_change_trigger", "positions"),
        ("trade_executed_trigger", "trades"),
    ]
    assert schema.verify(conn).ok


def test_apply_creates_publication_and_adds_tables(conn: psycopg.Connection[Any]) -> None:
    schema.apply(conn)
    assert catalog_snapshot(conn)["publication"] == [
        ("public", "portfolio_snapshots"), ("public", "positions"), ("public", "trades")]


def test_existing_members_are_fine_and_kept_on_uninstall(conn: psycopg.Connection[Any]) -> None:
    conn.execute("CREATE PUBLICATION supabase_realtime FOR TABLE positions")
    schema.apply(conn)
    assert len(catalog_snapshot(conn)["publication"]) == 3
    schema.uninstall(conn)
    # What the user had before apply is what they have after uninstall.
    assert conn.execute("SELECT schemaname, tablename FROM pg_publication_tables "
                        "WHERE pubname = 'supabase_realtime'").fetchall() == [("public", "positions")]


def test_verify_names_a_dropped_trigger(installed: psycopg.Connection[Any]) -> None:
    assert schema.verify(installed).ok
    installed.execute("DROP TRIGGER trade_executed_trigger ON trades")
    report = schema.verify(installed)
    assert not report.ok
    failed = [c for c in report.checks if c.failed]
    assert any(c.status == "missing" and "trade_executed_trigger" in c.name for c in failed)
    assert all("position_change_trigger" not in c.name for c in failed)
    schema.apply(installed)  # apply repairs it
    assert schema.verify(installed).ok


@pytest.mark.parametrize("tamper, expected", [
    ("ALTER TABLE positions DISABLE TRIGGER position_change_trigger", "position_change_trigger"),
    ("CREATE OR REPLACE FUNCTION supabase_push.capture_change_v1() RETURNS trigger "
     "LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$", "fingerprint"),
    ("ALTER PUBLICATION supabase_realtime DROP TABLE trades", "supabase_realtime has public.trades"),
    ("DROP PROCEDURE supabase_push.stamp_loop_v2", "supabase_push.stamp_loop_v2"),
    ("DROP FUNCTION public.supabase_push_changes(bigint, bigint, integer, text[])",
     "public.supabase_push_changes"),
])
def test_verify_detects_drift(installed: psycopg.Connection[Any], tamper: str, expected: str) -> None:
    installed.execute(tamper)
    report = schema.verify(installed)
    assert not report.ok
    assert any(expected in c.name for c in report.checks if c.failed), report.problems


def test_missing_table_is_named_and_nothing_changes(make_db: Any) -> None:
    url = make_db("empty")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE trades (id int)")
        with pytest.raises(MissingTableError) as caught:
            schema.apply(conn)
        assert "public.positions does not exist" in str(caught.value)
        assert "--create-tables" in (caught.value.hint or "")
        assert conn.execute("SELECT to_regnamespace('supabase_push')").fetchone() == (None,)
        assert conn.execute("SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM pg_publication").fetchone() == (0,)


def test_a_view_is_not_a_route_and_the_error_says_so(installed: psycopg.Connection[Any]) -> None:
    installed.execute("CREATE VIEW open_trades AS SELECT * FROM trades")
    before = catalog_snapshot(installed)
    with pytest.raises(DatabaseError) as caught:
        schema.apply(installed, [schema.parse_route("open_trades=open-trades")])
    assert caught.value.message == "public.open_trades is a view: a route is a table"
    assert caught.value.hint == "Route the tables it reads: their changes are what it shows."
    assert catalog_snapshot(installed) == before


def test_create_tables(make_db: Any) -> None:
    with psycopg.connect(make_db("empty"), autocommit=True) as conn:
        schema.apply(conn, create_tables=True)
        assert schema.verify(conn).ok
        schema.apply(conn, create_tables=True)  # existing tables are left alone


def test_concurrent_applies(make_db: Any) -> None:
    url = make_db("tables")
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                schema.apply(conn)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with psycopg.connect(url, autocommit=True) as conn:
        assert schema.verify(conn).ok
        assert conn.execute(ORIGINAL_VERIFY_QUERY).rowcount == 3
        assert conn.execute("SELECT count(*) FROM supabase_push.installation").fetchone() == (1,)


def test_uninstall_keeps_user_data(installed: psycopg.Connection[Any]) -> None:
    installed.execute("INSERT INTO positions (symbol) SELECT 'S' || g FROM generate_series(1, 50) g")
    installed.execute("INSERT INTO trades (symbol, side, quantity, price) VALUES ('S1','buy',1,1)")
    assert schema.uninstall(installed)
    assert installed.execute("SELECT count(*) FROM positions").fetchone() == (50,)
    assert installed.execute("SELECT count(*) FROM trades").fetchone() == (1,)
    assert installed.execute("SELECT to_regnamespace('supabase_push')").fetchone() == (None,)
    assert installed.execute("SELECT to_regprocedure('public.supabase_push_changes(bigint,bigint,integer,text[])'),"
                             " to_regprocedure('public.supabase_push_head()')").fetchone() == (None, None)
    assert installed.execute(ORIGINAL_VERIFY_QUERY).fetchall() == []
    assert installed.execute("SELECT count(*) FROM pg_publication").fetchone() == (0,)
    # Writes go on without the triggers, and uninstalling again is harmless.
    installed.execute("INSERT INTO positions (symbol) VALUES ('after')")
    assert not schema.uninstall(installed)


def test_routes_are_added_unless_replaced(installed: psycopg.Connection[Any]) -> None:
    """Regression: apply with one route silently removed the other two."""
    result = schema.apply(installed, [schema.Route("trades", "fills")])
    assert result.retargeted == ["public.trades -> fills (was trade-updates)"]
    assert result.added == [] and result.removed == []
    assert sorted(r["table_name"] for r in result.routes) == ["portfolio_snapshots", "positions", "trades"]
    again = schema.apply(installed)  # no routes: an upgrade in place keeps what is installed
    assert not again.changed and [r["topic"] for r in again.routes if r["table_name"] == "trades"] == ["fills"]
    installed.execute("CREATE TABLE orders (id bigint PRIMARY KEY)")
    added = schema.apply(installed, [schema.Route("public.orders", "order-updates")])
    assert added.added == ["public.orders -> order-updates"] and len(added.routes) == 4
    assert schema.verify(installed).ok


def test_replace_makes_the_routes_exactly_those(installed: psycopg.Connection[Any]) -> None:
    result = schema.apply(installed, [schema.Route("trades", "fills")], replace=True)
    assert sorted(result.removed) == ["public.portfolio_snapshots -> portfolio-updates",
                                      "public.positions -> position-updates"]
    assert installed.execute(ORIGINAL_VERIFY_QUERY).fetchall() == [("trade_executed_trigger", "trades")]
    assert catalog_snapshot(installed)["publication"] == [("public", "trades")]
    installed.execute("INSERT INTO trades (symbol, side, quantity, price) VALUES ('A','buy',1,1)")
    installed.execute("INSERT INTO positions (symbol) VALUES ('untracked')")
    assert [e.topic for e in read_changes(installed)] == ["fills"]
    assert schema.verify(installed).ok


def test_odd_table_names_are_quoted(conn: psycopg.Connection[Any]) -> None:
    conn.execute('CREATE SCHEMA "Desk 1"')
    conn.execute('CREATE TABLE "Desk 1"."we\'ird ""fills"" table" (id int PRIMARY KEY, v text)')
    route = schema.parse_route('"Desk 1"."we\'ird ""fills"" table"=odd-fills')
    schema.apply(conn, [route])
    conn.execute('INSERT INTO "Desk 1"."we\'ird ""fills"" table" VALUES (1, \'x\')')
    (event,) = read_changes(conn)
    assert (event.schema_name, event.table, event.topic) == ("Desk 1", 'we\'ird "fills" table',
                                                               "odd-fills")
    assert schema.verify(conn).ok
    schema.uninstall(conn)
    assert conn.execute('SELECT count(*) FROM "Desk 1"."we\'ird ""fills"" table"').fetchone() == (1,)


def test_a_partitioned_table_is_one_route(conn: psycopg.Connection[Any]) -> None:
    """Its partitions (one in another schema, one made after apply) run clones of its trigger; each change is
    logged as the routed table's, and apply, applied again, and verify agree that it is published (it is
    listed as its partitions). Moving a row to another partition is a DELETE then an INSERT, as Postgres
    runs it."""
    conn.execute("CREATE SCHEMA archive")
    conn.execute("CREATE TABLE fills (id bigint, symbol text, ts timestamptz NOT NULL, PRIMARY KEY (id, ts))"
                 " PARTITION BY RANGE (ts)")
    conn.execute("CREATE TABLE archive.fills_2025 PARTITION OF fills FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')")
    conn.execute("CREATE TABLE fills_2026 PARTITION OF fills FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')")
    route = schema.parse_route("fills=fill-updates")
    assert schema.apply(conn, [route]).changed
    assert not schema.apply(conn, [route]).changed
    conn.execute("CREATE TABLE fills_2027 PARTITION OF fills FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')")
    report = schema.verify(conn)
    assert report.ok, report.problems
    assert any(c.name == "supabase_realtime has public.fills" and c.status == "ok" for c in report.checks)

    conn.execute("INSERT INTO fills VALUES (1, 'SPY', '2025-06-01'), (2, 'QQQ', '2027-06-01')")
    conn.execute("UPDATE fills SET ts = '2026-06-01' WHERE id = 1")
    conn.execute("UPDATE fills SET symbol = 'IWM' WHERE id = 2")
    stamp(conn)
    events = read_changes(conn)
    assert [(e.schema_name, e.table, e.topic) for e in events] == [("public", "fills", "fill-updates")] * 5
    assert [(e.op, (e.record or e.old_record or {})["id"]) for e in events] == [
        ("INSERT", 1), ("INSERT", 2), ("DELETE", 1), ("INSERT", 1), ("UPDATE", 2)]

    conn.execute("TRUNCATE fills")
    stamp(conn)
    assert [(e.op, e.table) for e in read_changes(conn, events[-1].cursor)] == [("TRUNCATE", "fills")]
    schema.uninstall(conn)
    assert conn.execute("SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal").fetchone() == (0,)


@pytest.mark.parametrize("table", [
    "positions; DROP TABLE trades",
    "positions\"; DROP TABLE trades; --",
    "public.positions.extra",
])
def test_hostile_table_names_are_refused(conn: psycopg.Connection[Any], table: str) -> None:
    with pytest.raises(Exception) as caught:
        schema.apply(conn, [schema.Route(table, "t")])
    assert "trades" in str(caught.value) or "identifier" in str(caught.value) \
        or "not a table name" in str(caught.value)
    assert conn.execute("SELECT to_regclass('public.trades') IS NOT NULL").fetchone() == (True,)
    assert conn.execute("SELECT to_regnamespace('supabase_push')").fetchone() == (None,)


def test_missing_privilege(conn: psycopg.Connection[Any], cluster: Any) -> None:
    conn.execute("DROP ROLE IF EXISTS sp_weak")
    conn.execute("CREATE ROLE sp_weak LOGIN PASSWORD 'weak-pw'")
    try:
        url = cluster.url_for(conn.info.dbname)
        weak = url.replace(url.split("//")[1].split("@")[0], "sp_weak:weak-pw")
        with psycopg.connect(weak, autocommit=True) as as_weak, \
                pytest.raises(PermissionDeniedError) as caught:
            schema.apply(as_weak)
        assert "permission denied" in str(caught.value)
        assert "owner" in (caught.value.hint or "")
    finally:
        conn.execute("DROP ROLE sp_weak")


def test_broadcast_failure_never_aborts_the_write(installed: psycopg.Connection[Any]) -> None:
    """A failing broadcast is a WARNING and a counted failure; the write and its log row stay."""
    installed.execute("CREATE SCHEMA realtime")
    installed.execute(
        "CREATE FUNCTION realtime.send(payload jsonb, event text, topic text, private boolean "
        "DEFAULT true) RETURNS void LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'realtime is down'; "
        "END $$")
    warnings: list[str] = []
    installed.add_notice_handler(lambda diag: warnings.append(diag.message_primary or ""))
    installed.execute("INSERT INTO trades (symbol, side, quantity, price) VALUES ('W','buy',1,1)")
    assert installed.execute("SELECT count(*) FROM trades").fetchone() == (1,)
    assert [e.record["symbol"] for e in read_changes(installed) if e.record] == ["W"]
    assert any("broadcast" in w and "realtime is down" in w for w in warnings), warnings
    info = schema.status(installed)
    assert info.broadcast_failures == 1 and "realtime is down" in (info.last_failure or "")
    report = schema.verify(installed)
    assert any(c.name == "failures" and c.status == "warning" for c in report.checks)


def test_supabase_path_uses_realtime_send(installed: psycopg.Connection[Any]) -> None:
    """With realtime.send present (hosted Supabase, the local server) no NOTIFY is sent and
    each change goes to realtime.send with its topic, its op as event, and private explicit."""
    installed.execute("CREATE SCHEMA realtime")
    installed.execute("CREATE TABLE realtime.sent (payload jsonb, event text, topic text, private boolean)")
    installed.execute(
        "CREATE FUNCTION realtime.send(payload jsonb, event text, topic text, private boolean "
        "DEFAULT true) RETURNS void LANGUAGE sql AS "
        "$$ INSERT INTO realtime.sent VALUES (payload, event, topic, private) $$")
    installed.execute('LISTEN "trade-updates"')
    installed.execute("INSERT INTO trades (symbol, side, quantity, price) VALUES ('R','buy',1,1)")
    stamp(installed)  # the stamper's round pushes
    assert list(installed.notifies(timeout=0.3)) == []
    (payload, event, topic, private), = installed.execute("SELECT * FROM realtime.sent").fetchall()
    assert (event, topic, private) == ("INSERT", "trade-updates", True)
    assert payload["id"] == read_changes(installed)[0].id  # so realtime.send injects no other id
    schema.apply(installed, private_broadcast=False)
    installed.execute("INSERT INTO trades (symbol, side, quantity, price) VALUES ('R','buy',1,1)")
    stamp(installed)
    assert installed.execute("SELECT private FROM realtime.sent ORDER BY payload->'id' DESC LIMIT 1"
                             ).fetchone() == (False,)
    # Without a realtime.messages partition for today, realtime.send would drop messages:
    installed.execute("CREATE TABLE realtime.messages (inserted_at timestamp NOT NULL) "
                      "PARTITION BY RANGE (inserted_at)")
    report = schema.verify(installed)
    assert any("partition" in c.name and c.status == "missing" for c in report.checks)
    installed.execute("CREATE TABLE realtime.messages_today PARTITION OF realtime.messages FOR VALUES "
                      "FROM ((now() AT TIME ZONE 'UTC')::date) TO ((now() AT TIME ZONE 'UTC')::date + 1)")
    assert schema.verify(installed).ok


def test_the_file_runs_as_pasted(make_db: Any, cluster: Any) -> None:
    """sql/realtime_triggers.sql as is: through psql, and as one query (Supabase's SQL editor)."""
    url = make_db("tables")
    psql = [str(cluster.bin_dir / "psql")] if cluster.bin_dir else ["psql"]
    sql_file = read_sql(INSTALL)
    done = subprocess.run([*psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url],
                          input=sql_file, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    with psycopg.connect(url, autocommit=True) as conn:
        assert schema.verify(conn).ok
        conn.execute(sql_file.encode())  # the SQL editor sends the whole text as one query
        assert schema.verify(conn).ok
        assert len(conn.execute(ORIGINAL_VERIFY_QUERY).fetchall()) == 3


def test_dry_run_sql_is_what_apply_runs(make_db: Any, cluster: Any) -> None:
    url = make_db("empty")
    script = schema.apply_sql([schema.Route("trades", "it's-a-topic")], create_tables=True,
                              broadcast_mode="notify")
    psql = [str(cluster.bin_dir / "psql")] if cluster.bin_dir else ["psql"]
    done = subprocess.run([*psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url],
                          input=script, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    with psycopg.connect(url, autocommit=True) as conn:
        assert schema.status(conn).routes[0]["topic"] == "it's-a-topic"
        assert schema.status(conn).broadcast_mode == "notify"


def test_status(installed: psycopg.Connection[Any]) -> None:
    with installed.transaction():
        installed.execute("INSERT INTO positions (symbol) VALUES ('A'), ('B')")
    info = schema.status(installed)
    assert info.installed and info.schema_version == SCHEMA_VERSION
    assert (info.changes, info.transactions, info.pending_changes, info.pending_transactions) == (2, 0, 2, 1)
    assert stamp(installed) == 1
    info = schema.status(installed)
    assert (info.changes, info.transactions, info.pending_changes) == (2, 1, 0)
    assert info.last_cursor == str(read_changes(installed)[-1].cursor)
    assert info.broadcast_path == ["notify"]
    assert {r["topic"] for r in info.routes} == {"position-updates", "trade-updates",
                                                 "portfolio-updates"}


def test_app_roles_write_without_access_to_the_change_log(
        installed: psycopg.Connection[Any], cluster: Any) -> None:
    """Like Supabase's `authenticated`: may write trades, may not read supabase_push."""
    installed.execute("DROP ROLE IF EXISTS sp_app")
    installed.execute("CREATE ROLE sp_app LOGIN PASSWORD 'app-pw'")
    try:
        installed.execute("GRANT INSERT, SELECT ON trades TO sp_app")
        url = cluster.url_for(installed.info.dbname)
        as_app = url.replace(url.split("//")[1].split("@")[0], "sp_app:app-pw")
        with psycopg.connect(as_app, autocommit=True) as app:
            app.execute("INSERT INTO trades (symbol, side, quantity, price) VALUES ('U','buy',1,1)")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                app.execute("SELECT * FROM public.supabase_push_changes()")
        assert [e.record["symbol"] for e in read_changes(installed) if e.record] == ["U"]
    finally:
        installed.execute("DROP OWNED BY sp_app")
        installed.execute("DROP ROLE sp_app")


def test_an_install_that_did_not_record_its_push_path_is_told_to_apply(installed: psycopg.Connection[Any]) -> None:
    """Installed by a version before applied_path: a warning (verify still passes), and apply records it."""
    installed.execute("DROP TABLE supabase_push.push_path")
    report = schema.verify(installed)
    [check] = [c for c in report.checks if c.name == "push path"]
    assert report.ok and check.status == "warning" and "supabase-push apply" in check.detail
    assert schema.status(installed).applied_path is None
    schema.apply(installed)
    assert schema.status(installed).applied_path == ["notify"]
    assert not [c for c in schema.verify(installed).checks if c.name == "push path"]


def test_an_apply_that_must_add_triggers_completes_under_writers(installed_url: str) -> None:
    """An upgrade from an install without the TRUNCATE triggers, under 8 writers: the apply once held a SHARE
    lock on the change log (CREATE INDEX IF NOT EXISTS) while it waited to create triggers, deadlocking with
    the writers until it gave up after 60 s. Now it completes, and no write is lost or refused."""
    with psycopg.connect(installed_url, autocommit=True) as conn:
        for table in ("positions", "trades", "portfolio_snapshots"):
            conn.execute(f"DROP TRIGGER supabase_push_truncate ON {table}")
    stop, written, failures = threading.Event(), [0] * 8, []

    def writer(n: int) -> None:
        with psycopg.connect(installed_url, autocommit=True) as db:
            while not stop.is_set():
                try:
                    db.execute("INSERT INTO trades (symbol, side, quantity, price) VALUES (%s, 'buy', 1, 1)",
                               (f"W{n}",))
                    written[n] += 1
                except psycopg.Error as exc:
                    failures.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        with psycopg.connect(installed_url, autocommit=True) as conn:
            started = time.monotonic()
            schema.apply(conn)
            took = time.monotonic() - started
        time.sleep(0.3)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    with psycopg.connect(installed_url, autocommit=True) as conn:
        assert schema.verify(conn).ok
        logged = read_changes(conn, limit=1_000_000, topics=["trade-updates"])
    assert failures == [] and took < 10, (took, failures[:1])
    assert len(logged) == sum(written) and len({e.cursor for e in logged}) == len(logged)


def test_a_newer_schema_is_never_downgraded(installed: psycopg.Connection[Any]) -> None:
    """A database a later release installed (a schema version above this package's): apply, the pasted
    file and verify say so, and nothing changes."""
    newer = SCHEMA_VERSION + 1
    installed.execute("UPDATE supabase_push.installation SET schema_version = %s", (newer,))
    fingerprint = installed.execute("SELECT supabase_push.fingerprint_v1()").fetchone()
    with pytest.raises(ConfigError, match=f"schema version {newer}, newer than this package's") as refused:
        schema.apply(installed, [schema.Route("positions", "elsewhere")])
    assert "upgrade supabase-push" in str(refused.value.hint)
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="newer than this script"):
        installed.execute(read_sql(INSTALL).encode())  # as pasted into the SQL editor
    installed.execute("ROLLBACK")
    assert installed.execute("SELECT supabase_push.fingerprint_v1()").fetchone() == fingerprint
    assert [r["topic"] for r in schema.status(installed).routes if r["table_name"] == "positions"] == \
        ["position-updates"]
    report = schema.verify(installed)
    [version] = [c for c in report.checks if c.name == "schema version"]
    assert version.status == "drifted" and f"newer than this package's {SCHEMA_VERSION}" in version.detail
