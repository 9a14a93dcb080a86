"""Schema v2: writers only append, the stamper orders after commit (docs/architecture.md, "Commit order").

What the change log promises, under the new writer path: every committed change once, per-row order
exact, atomic transactions, contiguous transaction numbers; nothing waits for an unrelated long
transaction; exactly one stamping loop per database, handed over when its process goes; nothing lost
while nobody stamps, and the lag said.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import threading
import time
from typing import Any

import psycopg
import pytest

from supabase_push import schema
from supabase_push.changelog import read_changes
from supabase_push.cli import database as cli_database
from supabase_push.config import Settings
from supabase_push.embedded import LocalPostgres
from supabase_push.errors import SupabasePushError
from supabase_push.events import START, ChangeEvent
from supabase_push.local.stack import prepare
from supabase_push.stamper import Stamper, stamping
from supabase_push.subscribe import SqlReader, Subscriber

from .conftest import Cluster, DatabaseFactory
from .ordering_helpers import Writers, assert_ordered, transaction_seqs, whole_log
from .processes import cpu_seconds


def _insert(url: str, n: int = 1) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(n):
            conn.execute("INSERT INTO trades (symbol, side, quantity, price) VALUES ('T', 'buy', 1, 1)")


def test_writers_append_and_the_stamper_orders_them_exactly(installed_url: str) -> None:
    with stamping(installed_url), Writers(installed_url) as writers:
        time.sleep(4)
    events = whole_log(installed_url)
    assert writers.committed > 200 and writers.rolled_back > 5
    assert_ordered(events)
    seqs = transaction_seqs(events)
    assert seqs == list(range(1, len(seqs) + 1)), "transaction numbers have holes"
    assert len(seqs) == writers.committed + writers.setup_transactions
    by_seq: dict[int, set[int]] = {}
    for event in events:  # a transaction's changes are one block: one seq, consecutive in the log
        by_seq.setdefault(event.position.seq, set()).add(event.id)
    assert all(len(ids) <= 4 for ids in by_seq.values())


def test_a_commit_waits_for_no_lock_of_ours_and_sends_no_notify(installed_url: str) -> None:
    """While another session holds the lock v1's commits took (now the stamper's round lock), a writer
    commits at once (v1's writer would wait for it), and its commit NOTIFYs nothing (no cluster-wide
    NOTIFY lock either): pushes leave from the stamper, after commit."""
    with psycopg.connect(installed_url, autocommit=True) as holder, \
            psycopg.connect(installed_url, autocommit=True) as listener, \
            psycopg.connect(installed_url, autocommit=True) as writer:
        holder.execute("SELECT pg_advisory_lock(7218311412069051322)")
        listener.execute('LISTEN "trade-updates"')
        writer.execute("SET statement_timeout = '2s'")
        with writer.transaction():
            writer.execute("INSERT INTO trades (symbol, side, quantity, price) VALUES ('A', 'buy', 1, 1)")
            writer.execute("INSERT INTO positions (symbol) VALUES ('A')")
        assert list(listener.notifies(timeout=0.5)) == []
        holder.execute("SELECT pg_advisory_unlock(7218311412069051322)")
    assert [e.record["symbol"] for e in whole_log(installed_url) if e.record] == ["A", "A"]


def test_a_read_waits_at_most_two_seconds_for_a_round_stuck_behind_a_lock(installed_url: str) -> None:
    """A round that pushes takes tables it does not own (realtime.messages, here the installation row it reads
    its broadcast mode from): someone else's lock on one stalls it while it holds the round lock. A read that
    stamps first waits for it 2 s, then reads what is stamped; once the lock goes, the round commits and the
    change is read. Before, every such read (and a stamping loop) waited for as long as the lock was held."""
    url = installed_url
    _insert(url)
    with psycopg.connect(url, autocommit=True) as reader, psycopg.connect(url) as locker, \
            psycopg.connect(url, autocommit=True) as round_conn:
        assert [e.op for e in read_changes(reader)] == ["INSERT"]
        locker.execute("LOCK TABLE supabase_push.installation IN ACCESS EXCLUSIVE MODE")
        _insert(url)  # writers take no lock of ours: this commits at once
        stuck = threading.Thread(target=lambda: round_conn.execute("SELECT supabase_push.stamp_v2(true)"))
        stuck.start()
        try:
            time.sleep(0.3)  # the round has its lock and waits for the installation row
            reader.execute("SET statement_timeout = '10s'")  # without the bound: a QueryCanceled, not a hang
            started = time.monotonic()
            assert [e.op for e in read_changes(reader)] == ["INSERT"]  # the stuck round's change has no cursor yet
            assert 1.9 < time.monotonic() - started < 5
        finally:
            locker.rollback()
            stuck.join(10)
        assert [e.op for e in read_changes(reader)] == ["INSERT", "INSERT"]


def test_nothing_is_lost_while_nobody_stamps_and_the_lag_is_reported(installed_url: str) -> None:
    _insert(installed_url, 3)
    with psycopg.connect(installed_url, autocommit=True) as conn:
        info = schema.status(conn)
        report = schema.verify(conn)
        unread = conn.execute("SELECT count(*) FROM public.supabase_push_changes()").fetchone()
    assert unread == (0,)  # no cursor yet: readers that do not stamp see nothing, and skip nothing
    assert (info.pending_changes, info.pending_transactions, info.stamper_pid) == (3, 3, None)
    [check] = [c for c in report.checks if c.kind == "stamper"]
    assert check.status == "warning" and "3 committed changes wait" in check.detail
    assert report.ok  # a warning: nothing is broken, delivery waits
    assert len(whole_log(installed_url)) == 3  # a reader by SQL stamps first
    with psycopg.connect(installed_url, autocommit=True) as conn:
        assert schema.status(conn).pending_changes == 0


async def test_a_subscriber_whose_stamper_cannot_lead_reports_the_backlog(installed_url: str) -> None:
    """Another session holds the loop's lock and stamps nothing: the subscriber's stamper stands by and
    its stats say how many changes wait and for how long; once the lock goes, it leads and none wait."""
    holder = psycopg.connect(installed_url, autocommit=True)
    try:
        holder.execute("SELECT pg_advisory_lock(7218311412069051323)")  # the loop's key, held idle
        _insert(installed_url, 2)  # stamped by the round below, then 3 more that nothing stamps
        with psycopg.connect(installed_url, autocommit=True) as conn:
            conn.execute("SELECT supabase_push.stamp_v2(true)")
        _insert(installed_url, 3)
        stamper = Stamper(installed_url, retry=0.2)
        # Only the stamper runs: the subscriber's own reads would stamp what they read (readers by SQL
        # stamp first), and this is the state where nothing does.
        stats = Subscriber(reader=SqlReader(installed_url), topics=["trade-updates"], stamper=stamper).stats
        async with stamper:
            for _ in range(100):
                if stats.waiting_changes == 3 and (stats.waiting_seconds or 0) >= 0.5:
                    break
                await asyncio.sleep(0.05)
            assert (stats.stamper, stats.waiting_changes) == ("standby", 3), stats
            assert stats.waiting_seconds is not None and stats.waiting_seconds >= 0.5
            assert stats.as_dict()["waiting_changes"] == 3 and stamper.backlog is not None
            assert stamper.backlog.transactions == 3
            holder.execute("SELECT pg_advisory_unlock(7218311412069051323)")
            for _ in range(100):
                if stats.stamper == "leading" and stats.waiting_changes == 0:
                    break
                await asyncio.sleep(0.05)
            assert (stats.stamper, stats.waiting_changes, stats.waiting_seconds) == ("leading", 0, 0.0), stats
        with psycopg.connect(installed_url, autocommit=True) as conn:
            assert schema.status(conn).pending_changes == 0
    finally:
        holder.close()


@pytest.mark.timing
def test_a_long_open_transaction_delays_nobody_else(installed_url: str, cluster: Cluster,
                                                     make_db: DatabaseFactory) -> None:
    """An idle-in-transaction session holding an xid (here, and in another database of the cluster) for
    30 s: every other change gets its cursor within 100 ms all along, and the rounds stay cheap."""
    other = make_db("tables")
    held = [psycopg.connect(installed_url), psycopg.connect(other)]
    for conn in held:
        conn.execute("INSERT INTO portfolio_snapshots (total_value) VALUES (1)")  # an xid, left open
    delays: list[float] = []
    try:
        with stamping(installed_url, idle_ms=50), psycopg.connect(installed_url, autocommit=True) as db:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                db.execute("INSERT INTO trades (symbol, side, quantity, price) VALUES ('L', 'buy', 1, 1)")
                committed = time.monotonic()
                (change_id,) = db.execute("SELECT max(id) FROM supabase_push.change_log").fetchone() or (0,)
                while db.execute("SELECT (SELECT id FROM public.supabase_push_head()) >= %s",
                                 (change_id,)).fetchone() != (True,):
                    time.sleep(0.002)
                delays.append(time.monotonic() - committed)
                time.sleep(0.05)
    finally:
        for conn in held:
            conn.rollback()
            conn.close()
    delays.sort()
    assert len(delays) > 100
    assert delays[-1] < 0.1, f"slowest {delays[-1] * 1000:.0f} ms, p50 {delays[len(delays) // 2] * 1000:.1f} ms"
    events = whole_log(installed_url)
    assert len(events) == len(delays) and not any(e.table == "portfolio_snapshots" for e in events)


async def test_one_stamper_leads_and_another_takes_over_when_it_goes(installed_url: str) -> None:
    first, second = Stamper(installed_url, retry=0.2), Stamper(installed_url, retry=0.2)
    async with first:
        await _until(lambda: first.state == "leading")
        async with second:
            await _until(lambda: second.state == "standby")
            await asyncio.sleep(0.5)
            assert (first.state, second.state) == ("leading", "standby")
            await first.close()
            started = time.monotonic()
            await _until(lambda: second.state == "leading")
            handover = time.monotonic() - started
            await asyncio.to_thread(_insert, installed_url)
            await asyncio.sleep(0.2)
            with psycopg.connect(installed_url, autocommit=True) as conn:
                assert conn.execute("SELECT count(*) FROM public.supabase_push_changes()").fetchone() == (1,)
    assert handover < 3


async def test_a_stamper_whose_process_dies_keeps_working_until_the_next_takes_over(installed_url: str) -> None:
    """The loop runs in the server: a leader killed without a word (no cancel) leaves it running its
    chunk, so stamping never stops in between."""
    dead = await psycopg.AsyncConnection.connect(installed_url, autocommit=True)
    call = asyncio.create_task(dead.execute("CALL supabase_push.stamp_loop_v2(2, 1, 5, NULL)"))
    await asyncio.sleep(0.3)
    dead.pgconn.finish()  # the socket goes, as when a process is killed
    await asyncio.to_thread(_insert, installed_url)
    await asyncio.sleep(0.3)
    with psycopg.connect(installed_url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM public.supabase_push_changes()").fetchone() == (1,)
    successor = Stamper(installed_url, retry=0.2)
    async with successor:
        await _until(lambda: successor.state == "leading", timeout=10)
    call.cancel()


def test_deferrable_unique_constraints_are_refused_and_reported(installed: psycopg.Connection[Any]) -> None:
    installed.execute("CREATE TABLE orders (id int, ref text, CONSTRAINT orders_ref UNIQUE (ref) DEFERRABLE)")
    with pytest.raises(SupabasePushError, match=r"orders has DEFERRABLE .*orders_ref"):
        schema.apply(installed, [schema.Route("orders", "order-updates")])
    assert [r["table_name"] for r in schema.status(installed).routes] == [
        "portfolio_snapshots", "positions", "trades"]  # nothing changed
    installed.execute("ALTER TABLE trades ADD CONSTRAINT trades_order UNIQUE (id) DEFERRABLE INITIALLY DEFERRED")
    report = schema.verify(installed)
    [check] = [c for c in report.problems if c.name == "public.trades constraints"]
    assert check.status == "drifted" and "trades_order" in check.detail and not report.ok


def test_savepoints_pk_updates_and_reinserts_keep_per_row_order(installed_url: str) -> None:
    with stamping(installed_url), psycopg.connect(installed_url, autocommit=True) as conn:
        with conn.transaction():
            conn.execute("INSERT INTO positions (symbol, quantity) VALUES ('K', 1)")
            with conn.transaction(force_rollback=True):  # a savepoint, rolled back
                conn.execute("UPDATE positions SET quantity = 99 WHERE symbol = 'K'")
            conn.execute("UPDATE positions SET quantity = 2 WHERE symbol = 'K'")
        conn.execute("UPDATE positions SET id = id + 1000000 WHERE symbol = 'K'")  # the primary key moves
        with conn.transaction():
            conn.execute("DELETE FROM positions WHERE symbol = 'K'")
            conn.execute("INSERT INTO positions (symbol, quantity) VALUES ('K', 3)")
    events = [e for e in whole_log(installed_url) if e.table == "positions"]
    assert [(e.op, (e.record or e.old_record or {})["quantity"]) for e in events] == [
        ("INSERT", 1), ("UPDATE", 2), ("UPDATE", 2), ("DELETE", 2), ("INSERT", 3)]
    assert len({e.position.seq for e in events}) == 3
    assert events[0].position.seq == events[1].position.seq  # the savepoint's survivor is in its transaction


def test_two_phase_commit_is_stamped_when_committed() -> None:
    """A prepared transaction stays in progress (in every snapshot's xip list) until COMMIT PREPARED: it
    delays only itself, then gets the next cursor."""
    with LocalPostgres(settings={"max_prepared_transactions": "2"}) as pg:
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            schema.apply(conn, create_tables=True)
            conn.execute("BEGIN")
            conn.execute("INSERT INTO trades (symbol, side, quantity, price) VALUES ('P', 'buy', 1, 1)")
            conn.execute("PREPARE TRANSACTION 'sp'")
            _insert(pg.dsn)
            assert [e.record["symbol"] for e in whole_log(pg.dsn) if e.record] == ["T"]
            conn.execute("COMMIT PREPARED 'sp'")
        assert [e.record["symbol"] for e in whole_log(pg.dsn) if e.record] == ["T", "P"]


def test_a_read_inside_a_transaction_does_not_stamp(installed_url: str) -> None:
    """A stamp inside the caller's transaction would hold the stamper's lock until the caller commits."""
    _insert(installed_url)
    with psycopg.connect(installed_url) as conn:
        assert read_changes(conn, START) == []
        conn.rollback()
    assert len(whole_log(installed_url)) == 1


async def _until(condition: Any, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)


def test_the_loop_s_quiet_pace_is_the_one_stamper_and_cli_start_it_with(installed_url: str) -> None:
    """pg_cron calls the procedure with its own defaults, supabase-push processes (and `supabase-push stamp`)
    pass theirs: the same pace."""
    with psycopg.connect(installed_url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_catalog.pg_get_function_arguments('supabase_push.stamp_loop_v2'::regproc)"
                           ).fetchone()
    assert row is not None
    defaults = dict(part.removeprefix("IN ").split(" double precision DEFAULT ") for part in row[0].split(", ")
                    if " double precision DEFAULT " in part)  # "IN p_fast_ms double precision DEFAULT 1, ..."
    for starter in (Stamper, stamping):
        parameters = inspect.signature(starter).parameters
        assert float(defaults["p_fast_ms"]) == parameters["fast_ms"].default == 1
        assert float(defaults["p_idle_ms"]) == parameters["idle_ms"].default == 10
    # The CLI keeps its own literal (importing the stamper would slow `supabase-push --help`).
    assert inspect.signature(cli_database.stamp).parameters["idle_ms"].default == float(defaults["p_idle_ms"])


@pytest.mark.timing
def test_the_stamping_loop_costs_little_when_idle(installed_url: str) -> None:
    """One cheap transaction per idle_ms (10 ms, the shipped pace): the loop's backend uses under 2 % of a core
    (measured 0.4-0.6 % on a quiet 2-core machine; 0.2 % at 50 ms, schema 6's pace). The loop is asked for a
    minute and cancelled once measured, so a slow machine cannot see it end in between."""
    ready = threading.Event()
    conns: list[psycopg.Connection[Any]] = []
    ended: list[object] = []

    def loop() -> None:
        with psycopg.connect(installed_url, autocommit=True) as conn:
            conns.append(conn)
            ready.set()
            try:
                ended.append(conn.execute("CALL supabase_push.stamp_loop_v2(60)").fetchone())
            except psycopg.errors.QueryCanceled:
                ended.append("cancelled")
            except psycopg.Error as exc:
                ended.append(exc)

    thread = threading.Thread(target=loop)
    thread.start()
    assert ready.wait(5)
    pid = conns[0].info.backend_pid
    time.sleep(1.5)  # past the quiet second: at the idle pace
    before, started = cpu_seconds(pid), time.monotonic()
    time.sleep(4)
    assert not ended, f"the loop ended before it was measured: {ended}"
    cpu, idle = cpu_seconds(pid) - before, time.monotonic() - started
    conns[0].cancel_safe()
    thread.join()
    assert ended == ["cancelled"]
    assert cpu < 0.02 * idle, f"the idle stamping loop used {cpu:.3f} s of CPU in {idle:.1f} s"


def test_the_loop_skips_rounds_while_nothing_moves_and_stamps_the_next_commit(installed_url: str) -> None:
    """A loop held at its fast pace (idle_ms = fast_ms = 1) on a quiet database runs a round only when the
    cluster's snapshot has moved since the last one: a handful in 3 s, not one per millisecond (schema 4: each
    a transaction of ten queries). A commit in the middle still gets its cursor at once."""
    calls = "SELECT coalesce(sum(calls), 0) FROM pg_catalog.pg_stat_user_functions WHERE funcname = 'stamp_v2'"
    with psycopg.connect(installed_url, autocommit=True) as conn, \
            psycopg.connect(installed_url, autocommit=True) as watcher:
        conn.execute("SET track_functions = 'pl'")
        before = conn.execute(calls).fetchone()
        loop = threading.Thread(target=lambda: conn.execute("CALL supabase_push.stamp_loop_v2(3, 1, 1, NULL)"))
        loop.start()
        time.sleep(1.5)
        _insert(installed_url)
        written = time.monotonic()
        while watcher.execute("SELECT changes FROM supabase_push.pending_v2()").fetchone() != (0,):
            assert time.monotonic() - written < 1, "the commit was not stamped"
            time.sleep(0.005)
        stamped_after = time.monotonic() - written
        loop.join()
        conn.execute("SELECT pg_catalog.pg_stat_force_next_flush()")
        conn.execute("SELECT 1")  # the end of a transaction flushes the session's counts
        after = conn.execute(calls).fetchone()
    assert before is not None and after is not None
    rounds = after[0] - before[0]
    assert 1 <= rounds <= 10, f"{rounds} rounds in 3 s"
    print(f"{rounds} rounds in 3 s; the commit stamped {stamped_after * 1000:.1f} ms after it returned")


def test_the_stamp_command_runs_one_round_or_stands_as_the_stamper(installed_url: str) -> None:
    import json
    import os
    import signal
    import subprocess
    import sys

    _insert(installed_url, 2)
    once = subprocess.run([sys.executable, "-m", "supabase_push", "stamp", "--once", "--json",
                           "--db-url", installed_url], capture_output=True, text=True, timeout=60, check=False)
    assert once.returncode == 0, once.stderr
    assert json.loads(once.stdout) == {"ok": True, "stamped": 2, "last_cursor": "2:2"}
    proc = subprocess.Popen([sys.executable, "-m", "supabase_push", "stamp", "--json"], text=True,
                            env={**os.environ, "DATABASE_URL": installed_url}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert json.loads(proc.stdout.readline())["state"] == "leading"
        _insert(installed_url)
        time.sleep(0.3)
        with psycopg.connect(installed_url, autocommit=True) as conn:
            info = schema.status(conn)
        assert info.stamper_pid is not None and info.pending_changes == 0 and info.last_cursor == "3:3"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "password" not in err.lower()


def test_stamping_stands_by_without_spinning_while_another_process_leads(installed_url: str) -> None:
    """Regression: the loop returns at once when another holds the database, and stamping() called it
    again at once, hundreds of round trips a second."""
    with psycopg.connect(installed_url, autocommit=True) as leader:
        leader.execute("SELECT pg_advisory_lock(7218311412069051323)")  # the loop's lock, as a leader holds it
        cpu_before, started = time.process_time(), time.monotonic()
        with stamping(installed_url, retry=0.5):
            time.sleep(2)
        cpu, took = time.process_time() - cpu_before, time.monotonic() - started
    assert cpu < 0.05 * took, f"stamping() used {cpu:.2f} s of CPU in {took:.1f} s standing by"


def _write_through_crashes(url: str, n: int, stop: threading.Event, acknowledged: set[str]) -> None:
    """Transactions of one trade (order_id ``n-i``) and one hot-row update, reconnecting after a crash; a
    commit whose COMMIT returned goes into ``acknowledged``."""
    i = 0
    while not stop.is_set():
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
                while not stop.is_set():
                    order_id, i = f"{n}-{i}", i + 1
                    with conn.transaction():
                        conn.execute("INSERT INTO trades (symbol, side, quantity, price, order_id) "
                                     "VALUES ('C', 'buy', 1, 1, %s)", (order_id,))
                        conn.execute("UPDATE positions SET quantity = quantity + 1 WHERE symbol = %s",
                                     (f"HOT{n % 2}",))
                    acknowledged.add(order_id)
        except psycopg.OperationalError:  # the server is restarting after the crash
            time.sleep(0.1)


async def _crash_the_stamping_backend(url: str) -> int:
    """kill -9 the backend running the stamping loop once it runs one; Postgres then ends every backend
    and replays its WAL (crash recovery, as after a power cut with the data on disk)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
                row = conn.execute("SELECT stamper_pid, changes FROM supabase_push.pending_v2()").fetchone()
            if row and row[0]:
                os.kill(row[0], signal.SIGKILL)
                return int(row[0])
        except psycopg.OperationalError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("no stamping loop ran within 30 s")


async def test_a_crash_while_stamping_loses_doubles_and_reorders_nothing() -> None:
    """Crash recovery: the stamping loop's backend killed twice mid-work while 4 writers commit and a
    subscriber (which runs the stamper) reads. Afterwards every committed transaction has exactly one
    cursor, seq has no holes, per-row order is exact, and the subscriber got the log exactly once."""
    with LocalPostgres() as pg:
        url = pg.dsn
        with psycopg.connect(url, autocommit=True) as conn:
            schema.apply(conn, create_tables=True)
            conn.execute("INSERT INTO positions (symbol, quantity) VALUES ('HOT0', 0), ('HOT1', 0)")
        stop, acknowledged = threading.Event(), set[str]()
        writers = [threading.Thread(target=_write_through_crashes, args=(url, n, stop, acknowledged))
                   for n in range(4)]
        got: list[ChangeEvent] = []
        subscriber = Subscriber.from_settings(Settings(database_url=url), topics=["trade-updates", "position-updates"],
                                              poll_interval=0.2)

        async def read() -> None:
            async for event in subscriber:
                got.append(event)

        async with subscriber:
            reading = asyncio.create_task(read())
            for thread in writers:
                thread.start()
            try:
                killed = []
                for _ in range(2):
                    await asyncio.sleep(1.5)
                    killed.append(await _crash_the_stamping_backend(url))
                await asyncio.sleep(1.5)
            finally:
                stop.set()
                for thread in writers:
                    await asyncio.to_thread(thread.join, 30)
            with psycopg.connect(url, autocommit=True) as conn:
                rows = conn.execute("SELECT order_id FROM trades").fetchall()
            committed = {order_id for (order_id,) in rows}
            async with asyncio.timeout(30):
                while sum(e.table == "trades" for e in got) < len(committed):
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # anything more (a duplicate) would arrive now
            reading.cancel()

        events = whole_log(url)
        trades = [e.record["order_id"] for e in events if e.table == "trades" and e.record]
        assert acknowledged <= committed and len(acknowledged) > 100
        assert sorted(trades) == sorted(committed), "a committed change has no cursor, or two"
        assert_ordered(events)
        seqs = transaction_seqs(events)
        assert seqs == list(range(1, len(seqs) + 1)), "a hole in seq"
        assert [e.cursor for e in got] == [e.cursor for e in events], "the subscriber's stream is not the log"
        assert len(set(killed)) == 2
        print(f"{len(seqs)} transactions, {len(events)} changes, stamping backends killed: {killed}")


def test_a_round_pushes_by_index_once_the_log_holds_many_commits(make_db: DatabaseFactory) -> None:
    """The push step of a round (both paths: realtime.messages and NOTIFY), and a read by cursor, join
    commits to their changes by index, in the plan a long-running stamping loop settles on. Schema 4's did not: after
    five rounds PL/pgSQL's generic plan took `seq BETWEEN $1 AND $2` for a fifth of a percent of the
    commits table and hashed the whole change log, every round (68 ms at 80k commits, against 2.5 ms).
    Nor does a round compile its plans (JIT), which took 10 ms a round once the log had outgrown its
    statistics."""
    url = make_db("tables")
    with psycopg.connect(url, autocommit=True) as conn:
        prepare(conn, tables=False, broadcast_mode="both")
        for _ in range(40):  # a few big transactions (a batch job), then the ticks: 20,000 commits
            conn.execute("INSERT INTO trades (symbol, side, quantity, price) "
                         "SELECT 'BIG', 'buy', 1, 1 FROM generate_series(1, 1000)")
        conn.execute("SELECT supabase_push.stamp_v2(true)")
        conn.execute("ANALYZE supabase_push.change_log, supabase_push.commits")
        conn.execute("DO $$ BEGIN FOR i IN 1..20000 LOOP INSERT INTO trades (symbol, side, quantity, price) "
                     "VALUES ('T', 'buy', 1, 1); COMMIT; END LOOP; END $$")
        conn.execute("SELECT supabase_push.stamp_v2(true)")
        for _ in range(8):  # from the sixth call on, PL/pgSQL may keep a generic plan
            _insert(url, 2)
            conn.execute("SELECT supabase_push.stamp_v2(true)")
        plans: list[str] = []
        conn.add_notice_handler(lambda notice: plans.append(notice.message_primary or ""))
        assert conn.execute("SELECT pg_catalog.pg_jit_available()").fetchone() == (True,)
        for setting in ("LOAD 'auto_explain'", "SET auto_explain.log_min_duration = 0",
                        "SET auto_explain.log_nested_statements = on", "SET client_min_messages = log",
                        "SET plan_cache_mode = force_generic_plan",
                        "SET jit = on", "SET jit_above_cost = 0"):  # as a log the statistics think huge
            conn.execute(setting)
        _insert(url, 2)
        assert conn.execute("SELECT supabase_push.stamp_v2(true)").fetchone() == (2,)
        rounds = len(plans)
        conn.execute("RESET jit_above_cost")
        conn.execute("SELECT * FROM public.supabase_push_changes((SELECT max(seq) - 5 FROM supabase_push.commits), 0)")
    pushes = [plan for plan in plans if "supabase_push.commits" in plan and "change_log l" in plan]
    assert len(pushes) >= 3, "no plan of the push step or the read was seen"
    whole_scans = [line.strip() for plan in pushes for line in plan.splitlines()
                   if "Seq Scan on change_log" in line or "Parallel" in line]
    assert not whole_scans, whole_scans
    compiled = [plan.partition("Query Text:")[2].strip()[:60] for plan in plans[:rounds] if "JIT:" in plan]
    assert not compiled, f"the round compiled {len(compiled)} plans: {compiled}"


def test_a_round_looks_changes_up_by_index_whatever_the_log_holds(installed_url: str) -> None:
    """The plans of a stamping round, pending_v2(), the snapshot start and a read never scan the whole change log,
    even when its statistics make each txid look like a thousand rows (a log of big transactions) and a
    transaction is in progress across rounds. Schema 3's round did, every round, once the log had grown."""
    with psycopg.connect(installed_url, autocommit=True) as conn, \
            psycopg.connect(installed_url) as open_transaction:
        for _ in range(40):
            conn.execute("INSERT INTO trades (symbol, side, quantity, price) "
                         "SELECT 'BIG', 'buy', 1, 1 FROM generate_series(1, 1000)")
        open_transaction.execute("INSERT INTO trades (symbol, side, quantity, price) VALUES ('OPEN', 'buy', 1, 1)")
        conn.execute("SELECT supabase_push.stamp_v2(true)")  # the open one goes into the round's xip list
        _insert(installed_url, 20)
        conn.execute("ANALYZE supabase_push.change_log, supabase_push.commits")
        plans: list[str] = []
        conn.add_notice_handler(lambda notice: plans.append(notice.message_primary or ""))
        for setting in ("LOAD 'auto_explain'", "SET auto_explain.log_min_duration = 0",
                        "SET auto_explain.log_nested_statements = on", "SET client_min_messages = log"):
            conn.execute(setting)
        assert conn.execute("SELECT supabase_push.stamp_v2(true)").fetchone() == (20,)
        open_transaction.commit()
        conn.execute("SELECT * FROM supabase_push.pending_v2()")
        conn.execute("SELECT * FROM public.supabase_push_snapshot_start()")
        assert conn.execute("SELECT supabase_push.stamp_v2(true)").fetchone() == (1,)
        tail = conn.execute("SELECT max(seq) FROM supabase_push.commits").fetchone()
        assert tail is not None
        for after in (tail[0] - 1, 0):  # a subscriber's read of the newest changes, and a catch-up from the start
            assert len(conn.execute("SELECT * FROM public.supabase_push_changes(%s, 0, 500)", (after,)).fetchall()) \
                == (2 if after else 500)  # the last two commits of one change each; a full page
    assert sum("unstamped_v4" in plan or "v_txids" in plan for plan in plans) >= 3, "no plan of the lookup was seen"
    assert sum("supabase_push.commits t" in plan for plan in plans) >= 2, "no plan of a read was seen"
    whole_scans = [line.strip() for plan in plans for line in plan.splitlines()
                   if "Seq Scan on change_log" in line or "Parallel" in line]
    assert not whole_scans, whole_scans


@pytest.mark.parametrize("mode", ["notify", "realtime"])
def test_a_round_plans_no_helper_at_each_call(make_db: DatabaseFactory, mode: Any) -> None:
    """Each change's envelope and the push paths are inlined into the round's queries (schema 6): a
    helper with a SET clause was planned again at every call, 80 us of a 470 us round, and on the
    Supabase path at every change. Inlined SQL functions are not called, so track_functions counts none."""
    url = make_db("tables")
    with psycopg.connect(url, autocommit=True) as conn:
        prepare(conn, tables=False, broadcast_mode=mode)
        conn.execute("SET track_functions = 'all'")
        _insert(url, 3)
        assert conn.execute("SELECT supabase_push.stamp_v2(true)").fetchone() == (3,)
        conn.execute("SELECT pg_catalog.pg_stat_force_next_flush()")
        conn.execute("SELECT 1")  # the flush happens at the end of a statement
        called: dict[Any, Any] = dict(conn.execute("SELECT funcname, calls FROM pg_catalog.pg_stat_user_functions")
                                      .fetchall())
    assert called.get("stamp_v2") == 1 and called.get("publish_v2") == 1, called
    assert "envelope_v1" not in called and "broadcast_paths_v1" not in called, called


def _set_for_the_database(url: str, setting: str, value: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE {conn.info.dbname} SET {setting} = '{value}'")


@pytest.mark.parametrize("isolation", ["repeatable read", "serializable"])
async def test_the_loop_stamps_where_transactions_default_to_another_isolation(installed_url: str,
                                                                               isolation: str) -> None:
    """A database whose transactions default to REPEATABLE READ or SERIALIZABLE: the loop's rounds run READ
    COMMITTED all the same (schema 7 failed at the first round: nothing stamped, nothing pushed), whether pg_cron
    calls it or a Subscriber's Stamper does, and every change reaches the subscriber."""
    _set_for_the_database(installed_url, "default_transaction_isolation", isolation)
    _insert(installed_url, 2)
    with psycopg.connect(installed_url, autocommit=True) as conn:  # what pg_cron runs
        assert conn.execute("SHOW default_transaction_isolation").fetchone() == (isolation,)
        assert conn.execute("CALL supabase_push.stamp_loop_v2(0.5, 1, 10, NULL)").fetchone() == (True,)
        assert conn.execute("SELECT changes FROM supabase_push.pending_v2()").fetchone() == (0,)
    got: list[ChangeEvent] = []
    async with Subscriber.from_settings(Settings(database_url=installed_url), topics=["trade-updates"]) as sub:
        await _until(lambda: sub.stats.state == "push:listen" and sub.stats.stamper == "leading")
        await asyncio.to_thread(_insert, installed_url, 3)
        async for event in sub:
            got.append(event)
            if len(got) == 5:
                break
        assert sub.stats.stamper == "leading"
    assert [e.cursor.seq for e in got] == [1, 2, 3, 4, 5] and {e.source for e in got[2:]} == {"listen"}


def test_the_loop_ends_by_itself_before_a_statement_timeout_and_stamping_goes_on(installed_url: str) -> None:
    """A statement_timeout shorter than the loop's run (here 1 s, as a database or role may set): the loop
    returns at 80 % of it instead of being cancelled with an error (schema 7), and the helpers that call it
    again keep every change stamped within a round or two."""
    _set_for_the_database(installed_url, "statement_timeout", "1s")
    with psycopg.connect(installed_url, autocommit=True) as conn:
        started = time.monotonic()
        assert conn.execute("CALL supabase_push.stamp_loop_v2(59, 1, 10, NULL)").fetchone() == (True,)
        assert 0.6 < time.monotonic() - started < 1.0
    with stamping(installed_url), psycopg.connect(installed_url, autocommit=True) as watcher:
        slowest = 0.0
        for _ in range(12):  # 3 s: across several of the loop's runs
            _insert(installed_url)
            written = time.monotonic()
            while watcher.execute("SELECT changes FROM supabase_push.pending_v2()").fetchone() != (0,):
                assert time.monotonic() - written < 1, "a change waited a second for its cursor"
                time.sleep(0.005)
            slowest = max(slowest, time.monotonic() - written)
            time.sleep(0.25)
    print(f"slowest stamp after its commit: {slowest * 1000:.1f} ms")
