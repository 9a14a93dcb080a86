"""Broadcast helpers against the local Realtime server and a real Postgres, received by official clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum, StrEnum
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from realtime import AsyncRealtimeClient

import supabase_push
from supabase_push import sync
from supabase_push.broadcast import (
    Broadcaster,
    MemoryBackend,
    NotifyBackend,
    NullBackend,
    RestBackend,
    RetryPolicy,
    WebsocketBackend,
)
from supabase_push.errors import (
    BroadcasterClosedError,
    ConfigError,
    DeliveryError,
    DeliveryTimeout,
    PayloadError,
    PayloadTooLargeError,
)
from supabase_push.local import LocalRealtime, ServerConfig

from .http_faults import FaultProxy
from .realtime_helpers import Inbox, unique
from .test_local_python import subscribe

FAST_RETRY = RetryPolicy(attempts=6, base_delay=0.01, max_delay=0.05)


@contextlib.asynccontextmanager
async def listening(server: LocalRealtime, topic: str, *, private: bool) -> AsyncIterator[Inbox]:
    """An official realtime-py client joined to ``topic``, collecting its broadcasts."""
    client = AsyncRealtimeClient(server.realtime_url, token=server.service_role_key)
    inbox = Inbox()
    options: Any = {"config": {"broadcast": {"ack": False, "self": False}, "private": private}}
    channel = client.channel(topic, options)
    channel.on_broadcast("*", inbox)
    await subscribe(channel)
    try:
        yield inbox
    finally:
        await client.close()


def rest(server: LocalRealtime | FaultProxy, key: str, **options: Any) -> Broadcaster:
    timeout = options.pop("timeout", 5.0)
    return Broadcaster(RestBackend(server.url, key, timeout=timeout), **options)


@pytest.fixture
def supabase_env(realtime: LocalRealtime, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("SUPABASE_URL", realtime.url)
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", realtime.service_role_key)
    yield
    supabase_push.close_default_broadcaster()


# -- each backend delivers to an official client ----------------------------------------------


async def test_rest_typed_helpers_reach_a_private_subscriber(realtime: LocalRealtime) -> None:
    position_id, trade_id, account = uuid4().int % 10**9, uuid4().int % 10**9, unique("acct")
    async with contextlib.AsyncExitStack() as stack:
        positions = await stack.enter_async_context(listening(realtime, "position-updates", private=True))
        trades = await stack.enter_async_context(listening(realtime, "trade-updates", private=True))
        portfolios = await stack.enter_async_context(listening(realtime, "portfolio-updates", private=True))
        async with rest(realtime, realtime.service_role_key) as broadcaster:
            await broadcaster.broadcast_position_update(position_id, {
                "symbol": "SPY251219C00600000", "current_price": 13.50, "unrealized_pnl": Decimal("1200.00")})
            await broadcaster.broadcast_trade_executed(trade_id, {
                "symbol": "SPY", "side": "buy", "quantity": 2, "price": "13.25",
                "executed_at": datetime(2026, 11, 21, 14, 30, tzinfo=UTC)})
            await broadcaster.broadcast_portfolio_update(account, {"total_value": Decimal("100250.75"), "cash": 250})

        [position] = await positions.wait_for(lambda m: m["payload"].get("id") == position_id)
        [trade] = await trades.wait_for(lambda m: m["payload"].get("id") == trade_id)
        [portfolio] = await portfolios.wait_for(lambda m: m["payload"].get("account_id") == account)
    assert position["event"] == "position_update"
    assert position["payload"] == {"id": position_id, "symbol": "SPY251219C00600000", "current_price": 13.5,
                                   "unrealized_pnl": 1200.0}
    assert trade["event"] == "trade_executed"
    assert trade["payload"] == {"id": trade_id, "symbol": "SPY", "side": "buy", "quantity": 2.0, "price": 13.25,
                                "executed_at": "2026-11-21T14:30:00+00:00"}
    assert portfolio["event"] == "portfolio_update"
    assert portfolio["payload"] == {"account_id": account, "total_value": 100250.75, "cash": 250.0}


async def test_rest_public_and_private_topics_stay_apart(realtime: LocalRealtime) -> None:
    topic = unique("desk")
    async with listening(realtime, topic, private=False) as public, \
            listening(realtime, topic, private=True) as private:
        async with rest(realtime, realtime.service_role_key) as broadcaster:
            await broadcaster.broadcast(topic, "note", {"to": "public"}, private=False)
            await broadcaster.broadcast(topic, "note", {"to": "private"}, private=True)
        await public.wait_for(lambda m: m["payload"] == {"to": "public"})
        await private.wait_for(lambda m: m["payload"] == {"to": "private"})
        await asyncio.sleep(0.1)
    assert [m["payload"] for m in public.items] == [{"to": "public"}]
    assert [m["payload"] for m in private.items] == [{"to": "private"}]


async def test_websocket_backend_delivers_in_order(realtime: LocalRealtime) -> None:
    topic = unique("ws")
    async with listening(realtime, topic, private=True) as inbox:
        backend = WebsocketBackend(realtime.url, realtime.service_role_key)
        async with Broadcaster(backend) as broadcaster:
            await asyncio.gather(*(broadcaster.broadcast(topic, "tick", {"n": n}) for n in range(300)))
            await broadcaster.broadcast_position_update(7, {"symbol": "QQQ", "current_price": 1.25})
            assert broadcaster.stats.sent == 301
        got = await inbox.wait_for(lambda m: m["event"] == "tick", count=300)
    assert [m["payload"]["n"] for m in got] == list(range(300))


async def test_websocket_backend_recovers_after_a_server_restart(realtime_db: str) -> None:
    topic = unique("ws-restart")
    first = await LocalRealtime(realtime_db, ServerConfig(port=0)).start()
    backend = WebsocketBackend(first.url, first.service_role_key, timeout=1)
    async with Broadcaster(backend, private=False, retry=RetryPolicy(attempts=20, base_delay=0.05)) as broadcaster:
        async with listening(first, topic, private=False) as inbox:
            await broadcaster.broadcast(topic, "tick", {"n": 0})
            await inbox.wait_for(lambda m: m["payload"] == {"n": 0})
        await first.stop()
        second = await LocalRealtime(realtime_db, ServerConfig(port=first.port)).start()
        try:
            async with listening(second, topic, private=False) as inbox:
                await broadcaster.broadcast(topic, "tick", {"n": 1})
                await inbox.wait_for(lambda m: m["payload"] == {"n": 1})
        finally:
            await second.stop()


async def test_notify_backend_reaches_a_listening_connection(realtime_db: str) -> None:
    topic = unique("desk")
    listener = await psycopg.AsyncConnection.connect(realtime_db, autocommit=True)
    async with listener:
        await listener.execute(f'LISTEN "{topic}"')
        await listener.execute('LISTEN "trade-updates"')
        async with Broadcaster(NotifyBackend(realtime_db)) as broadcaster:
            await asyncio.gather(*(broadcaster.broadcast(topic, "tick", {"n": n}) for n in range(50)))
            await broadcaster.broadcast(topic, "tick", {"n": 0})  # identical twice: must not collapse
            await broadcaster.broadcast_trade_executed(5, {"symbol": "SPY", "side": "sell", "quantity": 1,
                                                           "price": 2})
        got: list[dict[str, Any]] = []
        async for note in listener.notifies(timeout=5, stop_after=52):
            if note.channel == topic:
                got.append(json.loads(note.payload))
            else:
                trade = json.loads(note.payload)
    assert trade["event"] == "trade_executed" and trade["payload"]["side"] == "sell"
    assert [m["payload"]["n"] for m in got] == [*range(50), 0]
    assert {m["type"] for m in got} == {"broadcast"} and {m["event"] for m in got} == {"tick"}
    assert len({m["meta"]["id"] for m in got}) == 51


async def test_notify_backend_refuses_payloads_postgres_cannot_carry(realtime_db: str) -> None:
    async with Broadcaster(NotifyBackend(realtime_db)) as broadcaster:
        assert broadcaster.max_payload_bytes < 8000
        with pytest.raises(PayloadTooLargeError, match="over the 7,799-byte limit"):
            await broadcaster.broadcast("t", "e", {"blob": "x" * 8000})
        assert broadcaster.stats.requests == 0


async def test_memory_backend_records_for_users_tests() -> None:
    backend = MemoryBackend()
    async with Broadcaster(backend) as broadcaster:
        await broadcaster.broadcast_position_update(1, {"symbol": "SPY", "current_price": 13.5})
        broadcaster.broadcast_nowait("alerts", "margin_call", {
            "account": uuid.UUID(int=1), "venue": Venue.NYSE, "due": Decimal("0.1000000000000000055511151231257827"),
            "at": datetime(2026, 11, 21, tzinfo=UTC), "tags": {"b", "a"}})
    assert [(m.topic, m.event, m.payload) for m in backend.messages] == [
        ("position-updates", "position_update", {"id": 1, "symbol": "SPY", "current_price": 13.5}),
        ("alerts", "margin_call", {"account": "00000000-0000-0000-0000-000000000001", "venue": 1,
                                   "due": "0.1000000000000000055511151231257827",  # no float holds it: a string
                                   "at": "2026-11-21T00:00:00+00:00", "tags": ["a", "b"]})]
    assert backend.sent(topic="alerts")[0].private is True


# -- the one-line helpers and their sync twins ------------------------------------------------


@pytest.mark.usefixtures("supabase_env")
async def test_one_line_async_helper_from_env(realtime: LocalRealtime) -> None:
    position_id = uuid4().int % 10**9
    async with listening(realtime, "position-updates", private=True) as inbox:
        await supabase_push.broadcast_position_update(position_id=position_id, position_data={
            "symbol": "SPY251219C00600000", "current_price": 13.50, "unrealized_pnl": 1200.00})
        await inbox.wait_for(lambda m: m["payload"].get("id") == position_id)


@pytest.mark.usefixtures("supabase_env")
def test_sync_twins_outside_an_event_loop(realtime: LocalRealtime) -> None:
    topic = unique("sync")

    async def receive() -> list[Any]:
        async with listening(realtime, topic, private=True) as inbox:
            await asyncio.to_thread(sync.broadcast, topic, "hello", {"from": "thread"})
            return await inbox.wait_for(lambda m: True)

    sync.broadcast(topic, "warmup", {"n": 0})  # plain sync code, no loop anywhere
    sync.broadcast_portfolio_update("acct-1", {"total_value": 10})
    assert asyncio.run(receive())[0]["payload"] == {"from": "thread"}


@pytest.mark.usefixtures("supabase_env")
async def test_sync_twins_inside_a_running_event_loop(realtime: LocalRealtime) -> None:
    trade_id = uuid4().int % 10**9
    async with listening(realtime, "trade-updates", private=True) as inbox:
        # A sync function called from async code (a Django signal, a library callback): it blocks, but works.
        sync.broadcast_trade_executed(trade_id, {"symbol": "SPY", "side": "buy", "quantity": 1, "price": 3})
        await inbox.wait_for(lambda m: m["payload"].get("id") == trade_id)


async def test_sync_broadcaster_context_manager(realtime: LocalRealtime) -> None:
    topic = unique("syncb")
    async with listening(realtime, topic, private=False) as inbox:
        def work() -> None:
            with sync.SyncBroadcaster.with_backend(RestBackend(realtime.url, realtime.service_role_key),
                                                   private=False) as broadcaster:
                for n in range(20):
                    broadcaster.broadcast(topic, "n", {"n": n})
                broadcaster.broadcast_position_update(3, {"symbol": "X"})
        await asyncio.to_thread(work)
        got = await inbox.wait_for(lambda m: m["event"] == "n", count=20)
    assert [m["payload"]["n"] for m in got] == list(range(20))


# -- configuration ------------------------------------------------------------------------


def test_from_env_unconfigured_names_the_variables() -> None:
    with pytest.raises(ConfigError) as caught:
        Broadcaster.from_env()
    for name in ("SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY", "SUPABASE_SERVICE_KEY", "SUPABASE_ANON_KEY",
                 "DATABASE_URL"):
        assert name in str(caught.value)


async def test_from_env_not_required_is_a_logged_no_op(caplog: pytest.LogCaptureFixture) -> None:
    broadcaster = Broadcaster.from_env(required=False)
    assert isinstance(broadcaster.backend, NullBackend)
    with caplog.at_level(logging.WARNING, logger="supabase_push"):
        async with broadcaster:
            await broadcaster.broadcast("t", "e", {"a": 1})
    assert broadcaster.backend.dropped == 1
    assert "broadcasts are dropped" in caplog.text and "SUPABASE_URL" in caplog.text
    assert "1 broadcast(s) were dropped" in caplog.text


def test_from_env_picks_the_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:secretpw@localhost/db")
    assert isinstance(Broadcaster.from_env().backend, NotifyBackend)
    monkeypatch.setenv("SUPABASE_URL", "https://abc.supabase.co")
    monkeypatch.setenv("SUPABASE_SERVICE_KEY", "sb_secret_0123456789")  # the older variable name
    backend = Broadcaster.from_env().backend
    assert isinstance(backend, RestBackend) and backend.endpoint == "https://abc.supabase.co/realtime/v1/api/broadcast"
    monkeypatch.setenv("SUPABASE_PUSH_BROADCAST", "websocket")
    ws = Broadcaster.from_env().backend
    assert isinstance(ws, WebsocketBackend) and ws.url == "wss://abc.supabase.co/realtime/v1"
    monkeypatch.setenv("SUPABASE_PUSH_BROADCAST", "carrier-pigeon")
    with pytest.raises(ConfigError, match="carrier-pigeon"):
        Broadcaster.from_env()
    monkeypatch.setenv("SUPABASE_PUSH_BROADCAST", "off")
    assert isinstance(Broadcaster.from_env().backend, NullBackend)


# -- faults: the server refuses, fails, hangs ---------------------------------------------------


@pytest.mark.parametrize("failure", ["429", "503", "drop"])
async def test_transient_failures_then_recovery_lose_nothing(realtime: LocalRealtime, failure: str) -> None:
    topic = unique("retry")
    async with listening(realtime, topic, private=False) as inbox, FaultProxy(realtime.url) as proxy:
        proxy.plan = [failure] * 3
        async with rest(proxy, realtime.service_role_key, private=False, retry=FAST_RETRY) as broadcaster:
            await asyncio.gather(*(broadcaster.broadcast(topic, "n", {"n": n}) for n in range(200)))
            assert broadcaster.stats.retries >= 3 and broadcaster.stats.failed == 0
        got = await inbox.wait_for(lambda m: True, count=200)
    assert proxy.outcomes()[:3] == [failure] * 3
    assert [m["payload"]["n"] for m in got] == list(range(200))  # all of them, once, in order


async def test_a_rate_limited_batch_is_split(realtime: LocalRealtime) -> None:
    topic = unique("split")
    async with listening(realtime, topic, private=False) as inbox, FaultProxy(realtime.url) as proxy:
        broadcaster = rest(proxy, realtime.service_role_key, private=False, retry=FAST_RETRY)
        futures = [broadcaster.broadcast_nowait(topic, "n", {"n": n}) for n in range(100)]
        proxy.plan = ["429"]
        await broadcaster.close()
        assert all(f.done() and f.exception() is None for f in futures)
        got = await inbox.wait_for(lambda m: True, count=100)
    assert [m["payload"]["n"] for m in got] == list(range(100))
    batches = [len(json.loads(s.body)["messages"]) for s in proxy.seen if s.outcome == "pass"]
    assert batches == [50, 50]


async def test_old_server_without_per_event_endpoint_gets_the_batch_endpoint(realtime: LocalRealtime) -> None:
    topic = unique("old")
    async with listening(realtime, topic, private=True) as inbox, FaultProxy(realtime.url) as proxy:
        proxy.per_event_404 = True
        async with rest(proxy, realtime.service_role_key) as broadcaster:
            await broadcaster.broadcast(topic, "a", {"n": 1})
            await broadcaster.broadcast(topic, "b", {"n": 2})
        got = await inbox.wait_for(lambda m: True, count=2)
    assert [m["payload"] for m in got] == [{"n": 1}, {"n": 2}]
    assert [s.path.split("?")[0].rsplit("/", 2)[-1] for s in proxy.seen] == ["a", "broadcast", "broadcast"]
    assert proxy.outcomes() == ["404", "pass", "pass"]


async def test_a_hanging_server_hits_the_timeout_with_a_clear_error(realtime: LocalRealtime) -> None:
    async with FaultProxy(realtime.url) as proxy:
        proxy.plan = ["hang"] * 2
        async with rest(proxy, realtime.service_role_key, timeout=0.3,
                        retry=RetryPolicy(attempts=2, base_delay=0.01)) as broadcaster:
            started = time.monotonic()
            with pytest.raises(DeliveryTimeout) as caught:
                await broadcaster.broadcast("t", "e", {"a": 1})
            elapsed = time.monotonic() - started
    assert "no answer from" in str(caught.value) and "within 0.3 s" in str(caught.value)
    assert "after 2 attempt(s)" in str(caught.value)
    assert 0.5 < elapsed < 5
    assert isinstance(caught.value, TimeoutError)


async def test_wrong_key_is_refused_without_printing_it(realtime: LocalRealtime,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    wrong = realtime.service_role_key[:-6] + "AAAAAA"
    with caplog.at_level(logging.DEBUG):
        async with rest(realtime, wrong) as broadcaster:
            with pytest.raises(DeliveryError) as caught:
                await broadcaster.broadcast("t", "e", {"a": 1})
    assert caught.value.status == 401 and "SUPABASE_SERVICE_ROLE_KEY" in str(caught.value)
    assert broadcaster.stats.retries == 0  # a 401 is not worth retrying
    assert wrong not in str(caught.value) and wrong not in caplog.text
    assert realtime.service_role_key not in caplog.text


async def test_unreachable_websocket_server_error_does_not_quote_the_key(caplog: pytest.LogCaptureFixture) -> None:
    key = "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.c2VjcmV0LXNpZ25hdHVyZQ"
    with caplog.at_level(logging.DEBUG):
        broadcaster = Broadcaster(WebsocketBackend("http://127.0.0.1:9", key, timeout=0.5),
                                  retry=RetryPolicy(attempts=2, base_delay=0.01))
        with pytest.raises(DeliveryError) as caught:
            await broadcaster.broadcast("t", "e", {"a": 1})
        await broadcaster.close()
    assert "cannot connect to ws://127.0.0.1:9/realtime/v1" in str(caught.value)
    assert key not in str(caught.value) and key not in caplog.text


# -- bad payloads are refused before anything is sent ------------------------------------------


class Side(StrEnum):
    BUY = "buy"


class Venue(Enum):
    NYSE = 1


@pytest.mark.parametrize(("payload", "error", "match"), [
    ({"blob": "x" * 300_000}, PayloadTooLargeError, "over the 256,000-byte limit"),
    ({"when": object()}, PayloadError, r"payload\.when is a object"),
    ({"price": float("nan")}, PayloadError, "JSON cannot carry"),
    ({"price": Decimal("Infinity")}, PayloadError, "JSON cannot carry"),
    ({"at": datetime(2026, 1, 1)}, PayloadError, "naive datetime"),
    ({1: "a"}, PayloadError, "JSON keys are strings"),
    ([1, 2], PayloadError, "must be a JSON object"),
    ({"text": "\udcff"}, PayloadError, "not valid Unicode"),
])
async def test_bad_payloads_are_refused_and_nothing_is_sent(realtime: LocalRealtime, payload: Any,
                                                            error: type[Exception], match: str) -> None:
    async with FaultProxy(realtime.url) as proxy, rest(proxy, realtime.service_role_key) as broadcaster:
        with pytest.raises(error, match=match):
            await broadcaster.broadcast("t", "e", payload)
        await broadcaster.broadcast("t", "e", {"fine": True})  # the broadcaster still works
    assert len(proxy.seen) == 1 and json.loads(proxy.seen[0].body) == {"fine": True}


async def test_typed_helpers_validate(realtime: LocalRealtime) -> None:
    async with Broadcaster(MemoryBackend()) as broadcaster:
        with pytest.raises(PayloadError, match="current_price"):
            await broadcaster.broadcast_position_update(1, {"current_price": "thirteen"})
        with pytest.raises(PayloadError, match="side"):
            await broadcaster.broadcast_trade_executed(1, {"symbol": "X", "side": "hold", "quantity": 1, "price": 1})
        with pytest.raises(PayloadError, match="quantity"):
            await broadcaster.broadcast_trade_executed(1, {"symbol": "X", "side": Side.BUY, "quantity": 0, "price": 1})
        with pytest.raises(PayloadError, match="disagrees"):
            await broadcaster.broadcast_position_update(1, {"id": 2})
        with pytest.raises(PayloadError, match="total_value"):
            await broadcaster.broadcast_portfolio_update("a", {"cash": 1})
        await broadcaster.broadcast_trade_executed(1, {"symbol": "X", "side": Side.BUY, "quantity": 1, "price": 1,
                                                       "venue": "XNYS"})
    [sent] = broadcaster.backend.messages  # type: ignore[attr-defined]
    assert sent.payload == {"id": 1, "symbol": "X", "side": "buy", "quantity": 1.0, "price": 1.0, "venue": "XNYS"}


# -- volume and shutdown ----------------------------------------------------------------------


async def test_ten_thousand_concurrent_messages_all_arrive(realtime: LocalRealtime) -> None:
    topic = unique("burst")
    async with listening(realtime, topic, private=False) as inbox:
        async with rest(realtime, realtime.service_role_key, private=False) as broadcaster:
            await asyncio.gather(*(broadcaster.broadcast(topic, "n", {"n": n}) for n in range(10_000)))
            assert broadcaster.stats.sent == 10_000
            assert broadcaster.stats.requests <= 200  # coalesced: about 100 messages per request
        got = await inbox.wait_for(lambda m: True, count=10_000, timeout=60)
    assert [m["payload"]["n"] for m in got] == list(range(10_000))


async def test_close_flushes_what_is_queued(realtime: LocalRealtime) -> None:
    topic = unique("flush")
    async with listening(realtime, topic, private=False) as inbox:
        broadcaster = rest(realtime, realtime.service_role_key, private=False)
        futures = [broadcaster.broadcast_nowait(topic, "n", {"n": n}) for n in range(500)]
        await broadcaster.close()
        assert all(f.done() and f.exception() is None for f in futures)
        await inbox.wait_for(lambda m: True, count=500)
    with pytest.raises(BroadcasterClosedError):
        await broadcaster.broadcast(topic, "late", {})


async def test_close_reports_what_it_could_not_deliver(realtime: LocalRealtime,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    async with FaultProxy(realtime.url) as proxy:
        proxy.plan = ["503"] * 1000
        broadcaster = rest(proxy, realtime.service_role_key, close_timeout=0.3,
                           retry=RetryPolicy(attempts=1000, base_delay=0.01, max_delay=0.02))
        futures = [broadcaster.broadcast_nowait("t", "e", {"n": n}) for n in range(30)]
        with caplog.at_level(logging.ERROR, logger="supabase_push"), \
                pytest.raises(BroadcasterClosedError, match="30 broadcast"):
            await broadcaster.close()
    assert all(isinstance(f.exception(), BroadcasterClosedError) for f in futures)
    assert "30 broadcast(s) were not delivered" in caplog.text


async def test_queue_is_bounded(realtime: LocalRealtime) -> None:
    broadcaster = Broadcaster(MemoryBackend(), max_pending=10)
    for n in range(10):
        broadcaster.broadcast_nowait("t", "e", {"n": n})
    with pytest.raises(supabase_push.BroadcastError, match="10 messages are already waiting"):
        broadcaster.broadcast_nowait("t", "e", {"n": 10})
    await broadcaster.close()
