"""The subscriber on LISTEN/NOTIFY and SQL polling, under faults: every change exactly once, in order."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import psycopg
import pytest

from supabase_push.events import ChangeEvent, Cursor
from supabase_push.subscribe import SqlReader, Subscriber
from supabase_push.subscribe import subscriber as subscriber_module
from supabase_push.sync import SyncSubscriber

from .subscriber_helpers import (
    CHANGES,
    TOPICS,
    assert_exactly_once_in_order,
    collect,
    logged,
    no_fault,
    run_with_fault,
    settings,
    terminate,
    until,
    write,
)

# -- LISTEN/NOTIFY ------------------------------------------------------------------------------


async def test_listen_terminated_midstream_loses_nothing(installed_url: str) -> None:
    subscriber = Subscriber.from_settings(settings(database_url=installed_url), topics=TOPICS,
                                          poll_interval=0.1, liveness_interval=1)
    killed: list[int] = []

    async def kill_listener() -> None:
        killed.append(await terminate(installed_url, "application_name = 'supabase-push'"))

    got, state = await run_with_fault(subscriber, installed_url, kill_listener, settle_in="push:listen")
    assert killed[0] >= 1
    assert_exactly_once_in_order(got, installed_url)
    assert subscriber.stats.push_failures >= 1 and subscriber.stats.switches >= 2
    assert subscriber.stats.delivered["listen"] > 0
    assert state == "push:listen"


async def test_listen_pushes_are_delivered_directly(installed_url: str) -> None:
    subscriber = Subscriber.from_settings(settings(database_url=installed_url), topics=TOPICS)
    got, _ = await run_with_fault(subscriber, installed_url, no_fault, fault_after=0)
    assert_exactly_once_in_order(got, installed_url)
    # Subscribed to every topic, each push continues the chain: almost nothing needs a read.
    assert subscriber.stats.delivered["listen"] > 0.9 * CHANGES, subscriber.stats


async def test_a_topic_nothing_routes_is_named_once_at_start(installed_url: str,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    """Most likely a typo: the subscriber says so (it would otherwise wait in silence), and still follows it (a
    route may be added later)."""
    with psycopg.connect(installed_url, autocommit=True) as conn:
        conn.execute("INSERT INTO supabase_push.event_topics (topic) VALUES ('signals')")
    caplog.set_level(logging.WARNING, "supabase_push.subscribe")
    subscriber = Subscriber.from_settings(settings(database_url=installed_url), transport="poll", poll_interval=0.05,
                                          topics=["trade-updates", "trade-update", "signals"])
    async with subscriber:
        await asyncio.wait_for(subscriber.wait_ready(), 10)
        await asyncio.sleep(0.3)
    [warning] = [r.getMessage() for r in caplog.records if "nothing will arrive" in r.getMessage()]
    assert warning.startswith("no table is routed to trade-update and no events are declared on it in SQL at ")
    assert warning.endswith("(topics here: portfolio-updates, position-updates, signals, trade-updates)")


async def test_a_database_without_supabase_push_is_named_with_the_fix(db_url: str) -> None:
    """It retries (the schema may come with the next deploy), and its error says what to run."""
    subscriber = Subscriber.from_settings(settings(database_url=db_url), transport="poll", poll_interval=0.05)
    async with subscriber:
        for _ in range(100):
            if subscriber.stats.read_failures:
                break
            await asyncio.sleep(0.05)
    assert subscriber.stats.last_error is not None
    assert 'schema "supabase_push" does not exist' in subscriber.stats.last_error
    assert "supabase-push is not installed on this database: run `supabase-push apply`" in subscriber.stats.last_error


async def test_poll_only(installed_url: str) -> None:
    subscriber = Subscriber.from_settings(settings(database_url=installed_url), topics=TOPICS, transport="poll",
                                          poll_interval=0.05)
    got, state = await run_with_fault(subscriber, installed_url, no_fault, fault_after=0)
    assert_exactly_once_in_order(got, installed_url)
    assert state == "poll:sql" and set(subscriber.stats.delivered) <= {"poll", "catch-up"}


async def test_restart_with_a_persisted_cursor(installed_url: str, tmp_path: Path) -> None:
    cursor_file = tmp_path / "cursor"
    baseline = len(logged(installed_url))
    writing = asyncio.create_task(write(installed_url))
    first = Subscriber.from_settings(settings(database_url=installed_url), topics=TOPICS, cursor_store=cursor_file)
    async with first:
        got = await collect(first, baseline + CHANGES // 2)
    assert cursor_file.read_text() == str(got[-1].cursor)
    second = Subscriber.from_settings(settings(database_url=installed_url), topics=TOPICS, cursor_store=cursor_file)
    async with second:
        got += await collect(second, CHANGES - CHANGES // 2)
        await writing
    assert_exactly_once_in_order(got, installed_url)


async def test_a_callback_that_raises_does_not_stop_delivery(installed_url: str,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []
    async_seen: list[str] = []

    def flaky(event: ChangeEvent) -> None:
        seen.append(str(event.cursor))
        if len(seen) % 3 == 0:
            raise RuntimeError("user bug")

    async def also_async(event: ChangeEvent) -> None:
        await asyncio.sleep(0)
        async_seen.append(str(event.cursor))

    subscriber = Subscriber.from_settings(settings(database_url=installed_url), topics=["trade-updates"])
    subscriber.on("trade-updates", flaky).on(None, also_async)
    with caplog.at_level(logging.ERROR, logger="supabase_push"):
        async with subscriber:
            await subscriber.wait_ready()
            async with await psycopg.AsyncConnection.connect(installed_url, autocommit=True) as db:
                for n in range(30):
                    await db.execute("INSERT INTO trades (symbol, side, quantity, price) VALUES (%s,'buy',1,1)",
                                     (f"CB{n}",))
            for _ in range(100):
                if len(async_seen) >= 30:
                    break
                await asyncio.sleep(0.05)
    assert len(seen) == len(async_seen) >= 30 and seen == async_seen
    assert subscriber.stats.callback_errors == len(seen) // 3
    assert "user bug" in caplog.text


async def test_row_filter(installed_url: str) -> None:
    subscriber = Subscriber.from_settings(settings(database_url=installed_url), topics=["trade-updates"],
                                          filters=["symbol=eq.KEEP"])
    async with subscriber:
        await subscriber.wait_ready()
        async with await psycopg.AsyncConnection.connect(installed_url, autocommit=True) as db:
            for symbol in ["KEEP", "DROP", "KEEP", "DROP"]:
                await db.execute("INSERT INTO trades (symbol, side, quantity, price) VALUES (%s,'buy',1,1)", (symbol,))
        got = await collect(subscriber, 2)
        await asyncio.sleep(0.2)
    assert [e.record["symbol"] for e in got if e.record] == ["KEEP", "KEEP"]
    assert subscriber.stats.filtered >= 2




def test_sync_subscriber_for_scripts(installed_url: str, tmp_path: Path) -> None:
    """No event loop in sight: iterate, time out politely, resume from the cursor file."""
    cursor_file = tmp_path / "cursor"
    with psycopg.connect(installed_url, autocommit=True) as conn:
        for n in range(5):
            conn.execute("INSERT INTO trades (symbol, side, quantity, price) VALUES (%s, 'buy', 1, 1)", (f"S{n}",))
    with SyncSubscriber(Subscriber.from_settings(settings(database_url=installed_url), topics=["trade-updates"],
                                                 cursor_store=cursor_file)) as sub:
        got = [sub.get(timeout=10) for _ in range(3)]
        assert sub.get(timeout=0.01) is not None  # the 4th, already read
    assert [e.record["symbol"] for e in got if e and e.record] == ["S0", "S1", "S2"]
    with SyncSubscriber(Subscriber.from_settings(settings(database_url=installed_url), topics=["trade-updates"],
                                                 cursor_store=cursor_file)) as sub:
        rest = [sub.get(timeout=10)]
        assert sub.get(timeout=0.3) is None
        assert sub.stats.delivered["catch-up"] == 1
    assert [e.record["symbol"] for e in rest if e and e.record] == ["S4"]


async def test_garbage_on_the_channel_is_ignored_and_loses_nothing(installed_url: str) -> None:
    """Not JSON, JSON that is not an envelope, a service broadcast, a malformed cursor: each is
    taken as 'something may have been missed' (a read by cursor), never as an event."""
    subscriber = Subscriber.from_settings(settings(database_url=installed_url), topics=TOPICS)

    async def garbage() -> None:
        async with await psycopg.AsyncConnection.connect(installed_url, autocommit=True) as db:
            for payload in ["not json", "[1, 2]", '{"type": "broadcast", "event": "x", "payload": {}}',
                            '{"cursor": "nope", "id": 1}', '{"cursor": "1:1"}', "\\u0000" * 3]:
                await db.execute("SELECT pg_notify('trade-updates', %s)", (payload,))

    got, state = await run_with_fault(subscriber, installed_url, garbage, fault_after=0.2)
    assert_exactly_once_in_order(got, installed_url)
    assert state == "push:listen" and subscriber.stats.push_failures == 0


async def test_a_row_too_large_for_notify_arrives_whole(installed_url: str) -> None:
    """NOTIFY carries no row (truncated, for any size); the subscriber reads it by cursor, whole."""
    subscriber = Subscriber.from_settings(settings(database_url=installed_url), topics=["trade-updates"])
    delivered: list[ChangeEvent] = []
    subscriber.on("trade-updates", delivered.append)
    running = asyncio.create_task(subscriber.run())
    try:
        await until(subscriber, "push:listen")  # the engine has taken the transport's up (and read once)
        async with await psycopg.AsyncConnection.connect(installed_url, autocommit=True) as db:
            await db.execute("INSERT INTO trades (symbol, side, quantity, price, order_id) VALUES "
                             "('BIG', 'buy', 1, 1, %s), ('SMALL', 'buy', 1, 1, 'x')", ("x" * 20_000,))
        for _ in range(100):
            if len(delivered) >= 2:
                break
            await asyncio.sleep(0.05)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    assert [e.record["symbol"] for e in delivered if e.record] == ["BIG", "SMALL"]
    assert delivered[0].record is not None and len(delivered[0].record["order_id"]) == 20_000
    assert not delivered[0].truncated and delivered[0].source == "listen"  # read by cursor on the push's word
    assert subscriber.stats.state == "stopped"


async def test_changes_after_an_early_commit_stamp_are_not_skipped(installed_url: str) -> None:
    """SET CONSTRAINTS ALL IMMEDIATE runs the commit stamp before the transaction's last change,
    which is then logged but not pushed; the next push must not vouch for a stream without it."""
    subscriber = Subscriber.from_settings(settings(database_url=installed_url), topics=["trade-updates"])
    async with subscriber:
        await asyncio.wait_for(subscriber.wait_ready(), 10)
        async with await psycopg.AsyncConnection.connect(installed_url, autocommit=True) as db:
            await db.execute("INSERT INTO trades (symbol, side, quantity, price) VALUES ('A', 'buy', 1, 1)")
            async with db.transaction():
                await db.execute("INSERT INTO trades (symbol, side, quantity, price) VALUES ('B', 'buy', 1, 1)")
                await db.execute("SET CONSTRAINTS ALL IMMEDIATE")
                await db.execute("INSERT INTO trades (symbol, side, quantity, price) VALUES ('C', 'buy', 1, 1)")
            await db.execute("INSERT INTO trades (symbol, side, quantity, price) VALUES ('D', 'buy', 1, 1)")
        got = await collect(subscriber, 4, timeout=10)
    assert [e.record["symbol"] for e in got if e.record] == ["A", "B", "C", "D"]  # C was logged, never pushed


class _DeafTransport:
    """A push transport like a client library that swallows its cancellation and waits on (here, until the
    test releases it)."""

    name = "listen"

    def __init__(self) -> None:
        self.release = asyncio.Event()

    def describe(self) -> str:
        return "a transport that ignores cancellation"

    async def run(self, topics: object, emit: object, up: object) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await self.release.wait()
            raise


async def test_close_does_not_hang_on_a_transport_that_ignores_cancellation(
        installed_url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """close() gives its tasks STOP_GRACE seconds, then says which one did not stop and where it waits, and
    closes the rest (the reader, the stamper) instead of waiting for ever."""
    monkeypatch.setattr(subscriber_module, "STOP_GRACE", 0.5)
    deaf = _DeafTransport()
    subscriber = Subscriber(reader=SqlReader(installed_url), push=deaf,  # type: ignore[arg-type]
                            topics=["trade-updates"], poll_interval=0.05)
    stuck = []
    try:
        await subscriber.start()
        await asyncio.sleep(0.2)
        started = asyncio.get_running_loop().time()
        with caplog.at_level(logging.ERROR, logger="supabase_push"):
            await asyncio.wait_for(subscriber.close(), 5)
        assert asyncio.get_running_loop().time() - started < 2
        assert subscriber.stats.state == "stopped"
        assert "supabase-push-transport did not stop within 0.5 s" in caplog.text and "in run" in caplog.text
        stuck = [t for t in asyncio.all_tasks() if t.get_name() == "supabase-push-transport"]
        assert len(stuck) == 1 and not stuck[0].done()
    finally:
        deaf.release.set()  # the test's own clean-up: the task ends before the loop does
        await asyncio.gather(*stuck, return_exceptions=True)


async def test_with_auto_ack_off_only_ack_moves_the_saved_cursor(installed_url: str, tmp_path: Path) -> None:
    """Delivered is not done: the cursor file holds what was acknowledged, and the next run resumes after it."""
    with psycopg.connect(installed_url, autocommit=True) as conn:
        for n in range(3):
            conn.execute("INSERT INTO trades (symbol, side, quantity, price) VALUES (%s, 'buy', 1, 1)", (f"A{n}",))
    cursor_file = tmp_path / "acks.cursor"
    first = Subscriber.from_settings(settings(database_url=installed_url), topics=["trade-updates"],
                                     cursor_store=cursor_file, auto_ack=False)
    async with first:
        got = await collect(first, 3)
        assert first.cursor == got[-1].cursor and first.acknowledged < got[0].cursor
        assert not cursor_file.exists()
        first.ack(got[1].cursor)
        assert cursor_file.read_text() == str(got[1].cursor) and first.acknowledged == got[1].cursor
        first.ack(got[0].cursor)  # behind what is acknowledged: nothing moves back
        assert cursor_file.read_text() == str(got[1].cursor)
        with pytest.raises(ValueError, match="cannot acknowledge"):
            first.ack(Cursor(got[-1].cursor.seq + 1, got[-1].cursor.id + 1))
    assert cursor_file.read_text() == str(got[1].cursor), "closing acknowledges nothing by itself"
    second = Subscriber.from_settings(settings(database_url=installed_url), topics=["trade-updates"],
                                      cursor_store=cursor_file)
    async with second:
        again = await collect(second, 1)
    assert [e.cursor for e in again] == [got[2].cursor], "the unacknowledged change comes again"
    assert cursor_file.read_text() == str(got[2].cursor)


def test_the_sync_twin_acknowledges_on_the_subscriber_thread(installed_url: str, tmp_path: Path) -> None:
    with psycopg.connect(installed_url, autocommit=True) as conn:
        for n in range(2):
            conn.execute("INSERT INTO trades (symbol, side, quantity, price) VALUES (%s, 'buy', 1, 1)", (f"S{n}",))
    cursor_file = tmp_path / "sync.cursor"
    with SyncSubscriber(Subscriber.from_settings(settings(database_url=installed_url), topics=["trade-updates"],
                                                 cursor_store=cursor_file, auto_ack=False)) as sub:
        first, second = sub.get(timeout=10), sub.get(timeout=10)
        assert first is not None and second is not None and sub.cursor == second.cursor
        sub.ack(first.cursor)
        assert sub.acknowledged == first.cursor and cursor_file.read_text() == str(first.cursor)
    assert cursor_file.read_text() == str(first.cursor)
