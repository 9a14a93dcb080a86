"""The subscriber under faults: every change exactly once, in cursor order.

8 concurrent writers produce 2,000 changes across the three tables while a fault hits the
transport; the events the subscriber hands out must equal the change log read from the start.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from supabase_push.changelog import read_changes
from supabase_push.config import Settings
from supabase_push.events import START, ChangeEvent
from supabase_push.local import LocalRealtime, ServerConfig
from supabase_push.subscribe import Subscriber

TOPICS = ["position-updates", "trade-updates", "portfolio-updates"]
WRITERS, CHANGES = 8, 2000


async def write(url: str, writers: int = WRITERS, changes: int = CHANGES, pause: float = 0.002) -> None:
    """``changes`` changes in transactions of 1-3 changes, from ``writers`` connections at once."""

    async def writer(n: int) -> None:
        rng = random.Random(n)
        left = changes // writers
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as db:
            while left > 0:
                async with db.transaction():
                    for _ in range(min(left, rng.randint(1, 3))):
                        table = rng.choice(["trades", "positions", "portfolio_snapshots"])
                        if table == "trades":
                            await db.execute("INSERT INTO trades (symbol, side, quantity, price) "
                                             "VALUES (%s, 'buy', 1, 1)", (f"W{n}",))
                        elif table == "positions":
                            await db.execute("INSERT INTO positions (symbol, quantity) VALUES (%s, 1)", (f"W{n}",))
                        else:
                            await db.execute("INSERT INTO portfolio_snapshots (total_value) VALUES (%s)", (n,))
                        left -= 1
                await asyncio.sleep(rng.uniform(0, pause))

    await asyncio.gather(*(writer(n) for n in range(writers)))


def logged(url: str) -> list[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        return [e.cursor for e in read_changes(conn, START, limit=1_000_000, topics=TOPICS)]


async def collect(subscriber: Subscriber, count: int, timeout: float = 60) -> list[ChangeEvent]:
    got: list[ChangeEvent] = []

    async def drain() -> None:
        async for event in subscriber:
            got.append(event)
            if len(got) >= count:
                return

    try:
        await asyncio.wait_for(drain(), timeout)
    except TimeoutError:
        raise AssertionError(f"got {len(got)} of {count} events; stats {subscriber.stats}") from None
    return got


async def run_with_fault(subscriber: Subscriber, url: str, fault: Callable[[], Awaitable[None]],
                         fault_after: float = 0.4) -> tuple[list[ChangeEvent], str]:
    baseline = len(logged(url))

    async def fault_midway() -> None:
        await asyncio.sleep(fault_after)
        await fault()

    async with subscriber:
        await asyncio.wait_for(subscriber.wait_ready(), 20)
        collecting = asyncio.create_task(collect(subscriber, baseline + CHANGES))
        await asyncio.gather(write(url), fault_midway())
        got = await collecting
        await asyncio.sleep(0.2)  # nothing more may come
        assert subscriber._out.empty()
        state = subscriber.stats.state
    return got, state


async def no_fault() -> None:
    pass


def assert_exactly_once_in_order(got: list[ChangeEvent], url: str) -> None:
    cursors = [e.cursor for e in got]
    assert len(set(cursors)) == len(cursors), "a change was delivered twice"
    assert cursors == logged(url), "the delivered stream differs from the change log"


def settings(**values: Any) -> Settings:
    return Settings(**values)


async def terminate(url: str, where: str) -> int:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
        cur = await admin.execute(
            f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE {where} AND pid <> pg_backend_pid()")
        row = await cur.fetchone()
        return int(row[0]) if row else 0


# -- LISTEN/NOTIFY ------------------------------------------------------------------------------


async def test_listen_terminated_midstream_loses_nothing(installed_url: str) -> None:
    subscriber = Subscriber.from_settings(settings(database_url=installed_url), topics=TOPICS,
                                          poll_interval=0.1, liveness_interval=1)
    killed: list[int] = []

    async def kill_listener() -> None:
        killed.append(await terminate(installed_url, "application_name = 'supabase-push'"))

    got, state = await run_with_fault(subscriber, installed_url, kill_listener)
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
    assert cursor_file.read_text() == got[-1].cursor
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
        seen.append(event.cursor)
        if len(seen) % 3 == 0:
            raise RuntimeError("user bug")

    async def also_async(event: ChangeEvent) -> None:
        await asyncio.sleep(0)
        async_seen.append(event.cursor)

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


# -- Supabase Realtime (the local server) ------------------------------------------------------


async def start_server(database_url: str, port: int = 0) -> LocalRealtime:
    return await LocalRealtime(database_url, ServerConfig(port=port)).start()


async def test_realtime_websocket_dropped_midstream_loses_nothing(realtime_db: str) -> None:
    server = await start_server(realtime_db)
    try:
        subscriber = Subscriber.from_settings(
            settings(supabase_url=server.url, service_role_key=server.service_role_key, database_url=realtime_db),
            topics=TOPICS, poll_interval=0.1, liveness_interval=1)

        async def drop_sockets() -> None:
            for session in list(server.sessions):
                await session.close_socket(1011, "dropped on purpose")

        got, _ = await run_with_fault(subscriber, realtime_db, drop_sockets)
    finally:
        await server.stop()
    assert_exactly_once_in_order(got, realtime_db)
    assert subscriber.stats.delivered["realtime"] > 0 and subscriber.stats.push_failures >= 1


async def test_realtime_server_restarted_midstream_loses_nothing(realtime_db: str) -> None:
    servers = [await start_server(realtime_db)]
    try:
        subscriber = Subscriber.from_settings(
            settings(supabase_url=servers[0].url, service_role_key=servers[0].service_role_key,
                     database_url=realtime_db),
            topics=TOPICS, poll_interval=0.1, liveness_interval=1)

        async def restart() -> None:
            await servers[0].stop()
            await asyncio.sleep(0.5)
            servers.append(await start_server(realtime_db, servers[0].port))

        got, state = await run_with_fault(subscriber, realtime_db, restart)
        assert state == "push:realtime"
    finally:
        await servers[-1].stop()
    assert_exactly_once_in_order(got, realtime_db)
    assert {"realtime", "poll"} <= set(subscriber.stats.delivered) or subscriber.stats.catch_ups > 0
