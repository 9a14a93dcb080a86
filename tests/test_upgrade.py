"""Schema upgrades in place, under load (v1 -> 3, v2 -> 3); and pg_dump/restore into a new cluster.

v1 and v2 are what users' databases hold (tests/data/realtime_triggers_v1.sql and _v2.sql, the files as
they shipped).
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from supabase_push import schema
from supabase_push._sql import SCHEMA_VERSION
from supabase_push.changelog import stamp
from supabase_push.embedded import LocalPostgres
from supabase_push.events import Cursor
from supabase_push.stamper import stamping
from supabase_push.subscribe import Subscriber

from .conftest import DatabaseFactory
from .ordering_helpers import SHIPPED_INSTALLS, Writers, assert_ordered, whole_log
from .subscriber_helpers import settings


def install_v1(url: str) -> None:
    install_shipped(url, 1)


def install_shipped(url: str, version: int) -> None:
    """The install script as schema ``version`` shipped it (what users' databases hold)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SHIPPED_INSTALLS[version].read_text().encode())
        assert conn.execute("SELECT schema_version FROM supabase_push.installation").fetchone() == (version,)


def test_verify_says_what_an_upgrade_would_change(make_db: DatabaseFactory) -> None:
    url = make_db("tables")
    install_v1(url)
    with psycopg.connect(url, autocommit=True) as conn:
        report = schema.verify(conn)
        status = schema.status(conn)
    [version] = [c for c in report.checks if c.name == "schema version"]
    assert version.status == "drifted" and f"this package ships {SCHEMA_VERSION}: supabase-push apply upgrades it " \
        "(0002: commit order by a stamper after commit; 0003: events from services" in version.detail
    missing = {c.name for c in report.checks if c.status == "missing"}
    assert missing >= {"supabase_push.commits", "supabase_push.stamp_v2"}
    assert status.installed and status.schema_version == 1 and status.routes


@pytest.mark.parametrize("version", [1, 2, 3, 4, 5, 6, 7, 8])
async def test_apply_upgrades_in_place_while_writers_write_and_a_subscriber_reads(make_db: DatabaseFactory,
                                                                                  tmp_path: Path, version: int) -> None:
    """8 writers through the upgrade (from each schema that shipped); a subscriber started on the old schema (with its
    cursor file) reads on; a cursor saved before the upgrade resumes exactly where it was."""
    url = make_db("tables")
    install_shipped(url, version)
    cursor_file = tmp_path / "sub.cursor"
    subscriber = Subscriber.from_settings(settings(database_url=url), topics=["position-updates", "trade-updates"],
                                          cursor_store=cursor_file, verify_interval=1)
    got: list[Any] = []

    async def consume() -> None:
        async for event in subscriber:
            got.append(event)

    async with subscriber:
        consuming = asyncio.create_task(consume())
        with Writers(url) as writers:
            await asyncio.sleep(1.5)
            before = list(got)
            assert len(before) > 20, "the old schema delivers before the upgrade"
            old_cursor = before[-1].position
            result = await asyncio.to_thread(_apply, url)
            upgraded_at = writers.committed
            await asyncio.sleep(2)
        deadline = time.monotonic() + 20
        logged = whole_log(url)
        while len(got) < len(logged) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        consuming.cancel()
    assert result.upgraded_from == version and result.schema_version == SCHEMA_VERSION
    assert writers.committed > upgraded_at + 50, "writers kept writing after the upgrade"
    assert [e.cursor for e in got] == [e.cursor for e in logged], "the subscriber lost or doubled changes"
    assert_ordered(logged)
    seqs = [e.position.seq for e in logged]
    assert sorted(set(seqs)) == list(range(1, len(set(seqs)) + 1)), "the old numbers go on, no holes"
    assert Cursor.parse(cursor_file.read_text().strip()) == logged[-1].position
    with psycopg.connect(url, autocommit=True) as conn:
        assert schema.verify(conn).ok
        assert conn.execute("SELECT to_regclass('supabase_push.change_txn')").fetchone() == (None,)
    # An old cursor (a cursor file, an SSE Last-Event-ID from before the upgrade) resumes exactly.
    resumed = Subscriber.from_settings(settings(database_url=url), topics=["position-updates", "trade-updates"],
                                       start=str(old_cursor), transport="poll")
    expected = [e.cursor for e in logged if e.position > old_cursor]
    rest: list[Any] = []
    async with resumed:
        async for event in resumed:
            rest.append(event)
            if len(rest) == len(expected):
                break
    assert [e.cursor for e in rest] == expected


def test_schema_9_mends_a_partitioned_route_of_schema_8(make_db: DatabaseFactory) -> None:
    """Schema 8 logged a partitioned table's changes under its partitions' names, and its second apply failed
    (the table, published, is listed as its partitions, so it was added again); the upgrade gives the
    route's triggers the table's name and every later apply passes."""
    url = make_db("tables")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE fills (id bigint, ts timestamptz NOT NULL, PRIMARY KEY (id, ts))"
                     " PARTITION BY RANGE (ts)")
        conn.execute("CREATE TABLE fills_2026 PARTITION OF fills FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')")
        conn.execute("""SET supabase_push.routes = '[{"table": "fills", "topic": "fill-updates"}]'""")
        conn.execute(SHIPPED_INSTALLS[8].read_text().encode())
        conn.execute("RESET supabase_push.routes")
        conn.execute("INSERT INTO fills VALUES (1, '2026-03-01')")
        stamp(conn)
        [before] = whole_log(url)
        assert before.table == "fills_2026"  # what schema 8 logged
        route = schema.parse_route("fills=fill-updates")
        result = schema.apply(conn, [route])
        assert result.upgraded_from == 8
        schema.apply(conn, [route])
        conn.execute("INSERT INTO fills VALUES (2, '2026-04-01')")
        stamp(conn)
        assert [e.table for e in whole_log(url)] == ["fills_2026", "fills"]
        report = schema.verify(conn)
        assert report.ok, report.problems


def _apply(url: str) -> schema.ApplyResult:
    with psycopg.connect(url, autocommit=True) as conn:
        return schema.apply(conn)


def test_an_upgrade_that_fails_changes_nothing(make_db: DatabaseFactory) -> None:
    url = make_db("tables")
    install_v1(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER TABLE trades ADD CONSTRAINT trades_once UNIQUE (id) DEFERRABLE")
        with pytest.raises(Exception, match="DEFERRABLE"):
            schema.apply(conn)
        assert conn.execute("SELECT schema_version FROM supabase_push.installation").fetchone() == (1,)
        conn.execute("INSERT INTO trades (symbol, side, quantity, price) VALUES ('S', 'buy', 1, 1)")
        assert [e.record["symbol"] for e in whole_log(url) if e.record] == ["S"]  # v1 still stamps at commit


@pytest.fixture(scope="module")
def own_clusters() -> Any:
    """Two fresh clusters (txids start low in both, so restored txids collide with new ones)."""
    with LocalPostgres() as source, LocalPostgres() as target:
        yield source, target


def test_pg_dump_restore_into_a_new_cluster_loses_nothing(own_clusters: tuple[LocalPostgres, LocalPostgres],
                                                          tmp_path: Path) -> None:
    source, target = own_clusters
    with psycopg.connect(source.dsn, autocommit=True) as conn:
        schema.apply(conn, create_tables=True)
    with stamping(source.dsn), Writers(source.dsn, n=4):
        time.sleep(1.5)
    with Writers(source.dsn, n=2):  # and some left unstamped at the dump
        time.sleep(0.3)
    before = whole_log(source.dsn)  # (stamps what was left)
    saved = before[len(before) // 2].position  # a subscriber's cursor from before the dump
    with psycopg.connect(source.dsn, autocommit=True) as conn:
        old_txids = {int(str(t)) for (t,) in conn.execute("SELECT DISTINCT txid FROM supabase_push.change_log")}
    dump = tmp_path / "db.dump"
    subprocess.run([str(source.bin_dir / "pg_dump"), "-Fc", "-f", str(dump), source.dsn], check=True)
    subprocess.run([str(target.bin_dir / "pg_restore"), "--no-owner", "-d", target.dsn, str(dump)], check=True)
    assert [e.cursor for e in whole_log(target.dsn)] == [e.cursor for e in before]
    with stamping(target.dsn), Writers(target.dsn, n=4) as writers:
        time.sleep(1.5)
    after = whole_log(target.dsn)
    with psycopg.connect(target.dsn, autocommit=True) as conn:
        reused = conn.execute("SELECT count(DISTINCT txid) FROM supabase_push.change_log "
                              "WHERE id > %s AND txid = ANY(%s)",
                              (before[-1].id, [str(t) for t in old_txids])).fetchone()
    assert reused is not None and reused[0] > 0, "the new cluster's transactions did not reuse dumped txids"
    assert [e.cursor for e in after[:len(before)]] == [e.cursor for e in before], "history changed"
    new = after[len(before):]
    assert len({e.position.seq for e in new}) == writers.committed + writers.setup_transactions
    assert_ordered(after)
    assert [e.cursor for e in whole_log(target.dsn, saved, page_size=100)] == \
        [e.cursor for e in after if e.position > saved]


def test_the_cli_says_it_upgraded_and_verify_then_passes(make_db: DatabaseFactory) -> None:
    from typer.testing import CliRunner

    from supabase_push.cli import app

    url = make_db("tables")
    install_v1(url)
    runner = CliRunner()
    before = runner.invoke(app, ["verify", "--db-url", url, "--json"])
    assert before.exit_code == 1 and "supabase-push apply upgrades it" in before.output
    result = runner.invoke(app, ["apply", "--db-url", url])
    assert result.exit_code == 0, result.output
    assert "upgraded in place from schema v1" in result.output
    assert runner.invoke(app, ["verify", "--db-url", url]).exit_code == 0
