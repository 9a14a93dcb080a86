"""The subscriber on Supabase Realtime (the local server), under faults: every change once, in order."""

from __future__ import annotations

import asyncio
import logging

import psycopg
import pytest

from supabase_push.changelog import stamp
from supabase_push.embedded import LocalPostgres
from supabase_push.events import ChangeEvent
from supabase_push.local import LocalRealtime, ServerConfig, tokens
from supabase_push.local.stack import prepare
from supabase_push.subscribe import RealtimeTransport, SqlReader, Subscriber

from .subscriber_helpers import (
    TOPICS,
    assert_exactly_once_in_order,
    logged,
    no_fault,
    run_with_fault,
    settings,
    until,
    write,
)
from .tcp_proxy import FreezingProxy


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

        got, state = await run_with_fault(subscriber, realtime_db, restart, settle_in="push:realtime")
        assert state == "push:realtime"
    finally:
        await servers[-1].stop()
    assert_exactly_once_in_order(got, realtime_db)
    assert {"realtime", "poll"} <= set(subscriber.stats.delivered) or subscriber.stats.catch_ups > 0


async def test_realtime_server_that_hangs_falls_back_to_polling(realtime_db: str) -> None:
    """Accepts the TCP connection, never answers the websocket handshake: poll, and keep trying."""
    async with FreezingProxy(1, hang=True) as proxy:
        push = RealtimeTransport(proxy.url, "not-a-real-key-but-long-enough", timeout=1)
        subscriber = Subscriber(reader=SqlReader(realtime_db), push=push, topics=TOPICS, poll_interval=0.1)
        got, state = await run_with_fault(subscriber, realtime_db, no_fault, fault_after=0)
    assert_exactly_once_in_order(got, realtime_db)
    assert state == "poll:sql"
    assert subscriber.stats.push_failures >= 1 and subscriber.stats.delivered["realtime"] == 0


async def test_realtime_silent_connection_is_noticed_by_the_watchdog(realtime: LocalRealtime, realtime_db: str) -> None:
    """The socket stays open but nothing comes back (no heartbeat replies, no acks): reconnect."""
    async with FreezingProxy(realtime.port) as proxy:
        subscriber = Subscriber.from_settings(
            settings(supabase_url=proxy.url, service_role_key=realtime.service_role_key, database_url=realtime_db),
            topics=TOPICS, poll_interval=0.1, liveness_interval=0.5)
        frozen: list[int] = []

        async def freeze() -> None:
            frozen.append(proxy.freeze())

        got, state = await run_with_fault(subscriber, realtime_db, freeze, settle_in="push:realtime")
    assert frozen[0] >= 1
    assert_exactly_once_in_order(got, realtime_db)
    assert subscriber.stats.push_failures >= 1, subscriber.stats
    assert state == "push:realtime"


async def test_realtime_refreshes_a_short_lived_token(realtime: LocalRealtime, realtime_db: str) -> None:
    """A token that expires while joined gets the channel closed; refreshed in time, nothing fails."""
    issued: list[str] = []

    def fresh_token() -> str:
        issued.append(tokens.mint("service_role", realtime.config.jwt_secret, ttl=3))
        return issued[-1]

    subscriber = Subscriber.from_settings(
        settings(supabase_url=realtime.url, anon_key=realtime.anon_key, database_url=realtime_db),
        topics=["trade-updates"], access_token=fresh_token, liveness_interval=1,
        start=(logged(realtime_db, ["trade-updates"]) or ["0:0"])[-1])
    async with subscriber:
        await asyncio.wait_for(subscriber.wait_ready(), 10)
        await asyncio.sleep(7)  # two lifetimes of the token
        async with await psycopg.AsyncConnection.connect(realtime_db, autocommit=True) as db:
            await db.execute("INSERT INTO trades (symbol, side, quantity, price) VALUES ('TOKEN', 'buy', 1, 1)")
        async for event in subscriber:
            if event.record and event.record.get("symbol") == "TOKEN":
                break
    assert len(issued) >= 3
    assert subscriber.stats.push_failures == 0, subscriber.stats
    assert event.source == "realtime"


async def test_realtime_refused_without_a_key_for_private_topics(realtime: LocalRealtime, realtime_db: str,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """The anon key may not join private channels: a clear reason in the log, and polling delivers."""
    subscriber = Subscriber.from_settings(
        settings(supabase_url=realtime.url, anon_key=realtime.anon_key, database_url=realtime_db),
        topics=["trade-updates"], poll_interval=0.1)
    with caplog.at_level(logging.WARNING, logger="supabase_push"):
        async with subscriber:
            await asyncio.wait_for(subscriber.wait_ready(), 10)
            async with await psycopg.AsyncConnection.connect(realtime_db, autocommit=True) as db:
                await db.execute("INSERT INTO trades (symbol, side, quantity, price) VALUES ('ANON', 'buy', 1, 1)")
            async for event in subscriber:
                if event.record and event.record.get("symbol") == "ANON":
                    break
    assert event.source in ("poll", "catch-up")
    assert subscriber.stats.state == "stopped" and subscriber.stats.push_failures >= 1
    assert "refused 'trade-updates'" in caplog.text and "RLS read policy" in caplog.text
    assert realtime.anon_key not in caplog.text


async def test_a_slow_consumer_slows_reading_and_loses_nothing(realtime: LocalRealtime, realtime_db: str) -> None:
    """Tiny queues and a consumer that dawdles: pushes overflow the transport's buffer, the
    subscriber reads them back by cursor; every change still arrives once, in order."""
    push = RealtimeTransport(realtime.url, realtime.service_role_key, buffer=5, liveness_interval=1)
    before = logged(realtime_db)
    subscriber = Subscriber(reader=SqlReader(realtime_db), push=push, topics=TOPICS, queue_size=5,
                            start=before[-1] if before else None)
    async with subscriber:
        await asyncio.wait_for(subscriber.wait_ready(), 10)
        got = []

        async def dawdle() -> None:
            async for event in subscriber:
                got.append(event)
                if len(got) % 50 == 0:
                    await asyncio.sleep(0.05)
                if len(got) >= 2000:
                    return

        await asyncio.gather(write(realtime_db), asyncio.wait_for(dawdle(), 60))
    assert [str(e.cursor) for e in got] == logged(realtime_db)[len(before):]
    assert subscriber.stats.catch_ups > 0 and subscriber.stats.push_failures == 0, subscriber.stats


async def test_a_project_without_public_channels_still_pushes(realtime_db: str,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """The watchdog's public liveness channel is refused: one warning, and pushes still flow."""
    async with LocalRealtime(realtime_db, ServerConfig(port=0, private_only=True)) as server:
        subscriber = Subscriber.from_settings(
            settings(supabase_url=server.url, service_role_key=server.service_role_key, database_url=realtime_db),
            topics=TOPICS, liveness_interval=0.5)
        with caplog.at_level(logging.WARNING, logger="supabase_push"):
            got, state = await run_with_fault(subscriber, realtime_db, no_fault, fault_after=0)
    assert_exactly_once_in_order(got, realtime_db)
    assert state == "push:realtime" and subscriber.stats.push_failures == 0
    assert subscriber.stats.delivered["realtime"] > 0
    assert caplog.text.count("refused a public liveness channel") == 1


async def test_a_push_decoded_before_its_round_is_visible_is_read_soon_after() -> None:
    """Realtime decodes a stamping round once its commit is flushed, before reads can see it; here a
    synchronous standby that never answers holds each round's commit (the stamper's commits are synchronous)
    until the test lets it go. A push that does not follow the cursor is read by cursor; when that read cannot
    see the pushed change yet, the subscriber reads again soon, not at its next verify read (a minute here)."""
    with LocalPostgres(settings={"synchronous_standby_names": "nobody", "synchronous_commit": "local"}) as pg:
        url = pg.dsn
        with psycopg.connect(url, autocommit=True) as conn:
            prepare(conn)

            def trade(symbol: str) -> None:
                conn.execute("INSERT INTO trades (symbol, side, quantity, price) VALUES (%s, 'buy', 1, 1)", (symbol,))

            async def held_round() -> asyncio.Task[int | None]:
                """A stamping round on a connection of its own, whose commit the standby holds."""
                def round_() -> int | None:
                    with psycopg.connect(url, autocommit=True) as own:
                        return stamp(own)
                task = asyncio.create_task(asyncio.to_thread(round_))
                for _ in range(250):
                    if conn.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'"
                                    ).fetchone() == (1,):
                        return task
                    await asyncio.sleep(0.02)
                raise AssertionError("the round's commit was never held")

            async def release(task: asyncio.Task[int | None]) -> None:
                conn.execute("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE wait_event = 'SyncRep'")
                assert await task == 1

            async with LocalRealtime(url, ServerConfig(port=0, rest=False, auth=False, stamp=False)) as server:
                trade("A")
                first = await held_round()  # A's push goes out before anyone listens
                subscriber = Subscriber.from_settings(
                    settings(supabase_url=server.url, service_role_key=server.service_role_key, database_url=url),
                    topics=["trade-updates"], transport="realtime", stamp=False, verify_interval=60)
                got: list[ChangeEvent] = []
                subscriber.on("trade-updates", got.append)
                async with subscriber:
                    await asyncio.wait_for(subscriber.wait_ready(), 20)
                    await until(subscriber, "push:realtime")
                    await release(first)  # A is visible now, and nobody was told
                    trade("B")
                    second = await held_round()  # B's push (after A) makes the subscriber read: A, not B yet
                    for _ in range(500):
                        if got:
                            break
                        await asyncio.sleep(0.02)
                    assert [e.record["symbol"] for e in got if e.record] == ["A"]
                    await release(second)
                    for _ in range(250):  # 5 s; the next verify read would come after 60
                        if len(got) == 2:
                            break
                        await asyncio.sleep(0.02)
                    assert [e.record["symbol"] for e in got if e.record] == ["A", "B"], subscriber.stats
