"""``Broadcaster.from_supabase`` and ``Subscriber.from_supabase``: one line for a user who already has a
supabase-py client, sync or async, with its URL, key and session, against the local server."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import psycopg
import pytest
from supabase import AsyncClientOptions, ClientOptions, acreate_client, create_client

from supabase_push import Broadcaster, ConfigError
from supabase_push.local import LocalRealtime
from supabase_push.subscribe import Subscriber
from supabase_push.sync import SyncBroadcaster

from .realtime_helpers import unique
from .subscriber_helpers import logged
from .test_broadcast import listening


@pytest.mark.parametrize("style", ["jwt", "sb"])
async def test_a_backend_client_broadcasts_to_private_topics(realtime: LocalRealtime, style: str) -> None:
    key = realtime.service_role_key if style == "jwt" else realtime.secret_key
    client = await acreate_client(realtime.url, key, AsyncClientOptions(httpx_client=httpx.AsyncClient()))
    topic, marker = unique("from-supabase"), uuid.uuid4().hex
    try:
        async with listening(realtime, topic, private=True) as inbox:
            async with Broadcaster.from_supabase(client) as broadcaster:
                await broadcaster.broadcast(topic, "signal", {"marker": marker})
            await inbox.wait_for(lambda m: m["payload"].get("marker") == marker)
    finally:
        assert client.options.httpx_client is not None
        await client.options.httpx_client.aclose()


async def test_a_signed_in_client_broadcasts_as_its_user(realtime: LocalRealtime, realtime_db: str) -> None:
    """Private topics take the user's token: with a write policy for signed-in users the message goes out;
    the anon key alone (the same client signed out) is dropped, as on Supabase."""
    topic = unique("signals")
    with psycopg.connect(realtime_db, autocommit=True) as conn:
        conn.execute(f"CREATE POLICY signed_in_send_{topic.replace('-', '_')} ON realtime.messages FOR INSERT "
                     f"TO authenticated WITH CHECK (realtime.topic() = '{topic}')")
    client = await acreate_client(realtime.url, realtime.publishable_key,
                                  AsyncClientOptions(httpx_client=httpx.AsyncClient()))
    try:
        await client.auth.sign_up({"email": f"{uuid.uuid4().hex[:10]}@example.com", "password": "correct horse"})
        async with listening(realtime, topic, private=True) as inbox:
            broadcaster = Broadcaster.from_supabase(client)
            async with broadcaster:
                await broadcaster.broadcast(topic, "signal", {"as": "user"})
                await inbox.wait_for(lambda m: m["payload"].get("as") == "user")
                await client.auth.sign_out()
                await broadcaster.broadcast(topic, "signal", {"as": "anon"})
            await asyncio.sleep(0.5)
            assert [m["payload"]["as"] for m in inbox.items] == ["user"]
    finally:
        await client.realtime.close()
        assert client.options.httpx_client is not None
        await client.options.httpx_client.aclose()


def test_a_sync_client_works_too(realtime: LocalRealtime) -> None:
    client = create_client(realtime.url, realtime.secret_key, ClientOptions(httpx_client=httpx.Client()))
    try:
        with SyncBroadcaster.from_supabase(client) as broadcaster:
            broadcaster.broadcast(unique("sync"), "signal", {"n": 1})
            assert broadcaster.broadcaster.stats.sent == 1
    finally:
        assert client.options.httpx_client is not None
        client.options.httpx_client.close()


async def test_a_subscriber_pushes_through_realtime_and_reads_through_rest(realtime: LocalRealtime,
                                                                          realtime_db: str) -> None:
    """No DATABASE_URL: pushes through the client's Realtime, the change log by cursor through the same
    origin's /rest/v1 (the local server's PostgREST)."""
    client = await acreate_client(realtime.url, realtime.secret_key,
                                  AsyncClientOptions(httpx_client=httpx.AsyncClient()))
    before = (logged(realtime_db, ["trade-updates"]) or ["0:0"])[-1]
    with psycopg.connect(realtime_db, autocommit=True) as conn:
        conn.execute("INSERT INTO trades (symbol, side, quantity, price) VALUES ('FROMSB1', 'buy', 1, 1)")
    subscriber = Subscriber.from_supabase(client, topics=["trade-updates"], start=before)
    seen: list[str] = []
    try:
        async with subscriber:
            await asyncio.wait_for(subscriber.wait_ready(), 10)
            with psycopg.connect(realtime_db, autocommit=True) as conn:
                conn.execute("INSERT INTO trades (symbol, side, quantity, price) VALUES ('FROMSB2', 'buy', 1, 1)")
            async with asyncio.timeout(20):
                async for event in subscriber:
                    if event.record and str(event.record.get("symbol")).startswith("FROMSB"):
                        seen.append(f"{event.record['symbol']}:{event.source}")
                    if len(seen) == 2:
                        break
    finally:
        assert client.options.httpx_client is not None
        await client.options.httpx_client.aclose()
    assert seen[0] == "FROMSB1:catch-up" and seen[1].startswith("FROMSB2:")
    assert subscriber.reader.describe() == f"PostgREST at {realtime.url}/rest/v1"
    assert subscriber.stats.read_failures == 0


def test_something_else_is_refused_clearly() -> None:
    with pytest.raises(ConfigError, match="is not a supabase client"):
        Broadcaster.from_supabase(object())
    with pytest.raises(ConfigError, match="is not a supabase client"):
        Subscriber.from_supabase("https://example.supabase.co")
