"""Broadcast throughput: supabase-push's helpers against the official client's http_send.

    python bench/broadcast_throughput.py [--runs 3] [--quick]      (all sections: python -m bench)

The local Realtime server runs in its own process. Each run sends messages (private
topic, service role key) four ways and counts messages per second until every one was
accepted (HTTP 202); the peer sends fewer, as it is about 30 times slower:
  ours, burst        Broadcaster (REST backend): all messages at once (asyncio.gather)
  ours, one by one   Broadcaster: await each message before the next
  peer, one by one   realtime's AsyncRealtimeChannel.http_send, awaited per message
  peer, concurrent   http_send for all messages at once (asyncio.gather, 64 in flight)
and durable events (Broadcaster.publish: one committed change-log row each, pushed by the server's
stamper), over SQL and, when a PostgREST binary is there, over PostgREST RPC:
  publish, one by one    await each event before the next
  publish, 8 publishers  8 broadcasters (8 connections) at once, each one by one
  bare INSERT, one by one  the peer of publish: the same payload into an untracked jsonb table, one
                           autocommit INSERT each; both again on a cluster with durable commits
Medians over the runs; ratios ours / peer (higher is better).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

import psycopg
from _common import channel_options
from _report import Ratio, Section
from _stack import Stack, run_alone, stack
from realtime import AsyncRealtimeClient

from supabase_push.broadcast import Broadcaster, NullBackend, Publisher, RestBackend, RestPublisher, SqlPublisher


async def ours_burst(url: str, key: str, n: int) -> float:
    async with Broadcaster(RestBackend(url, key)) as broadcaster:
        started = time.perf_counter()
        await asyncio.gather(*(broadcaster.broadcast("bench", "tick", {"n": i, "price": 13.5}) for i in range(n)))
        return n / (time.perf_counter() - started)


async def ours_sequential(url: str, key: str, n: int) -> float:
    async with Broadcaster(RestBackend(url, key)) as broadcaster:
        started = time.perf_counter()
        for i in range(n):
            await broadcaster.broadcast("bench", "tick", {"n": i, "price": 13.5})
        return n / (time.perf_counter() - started)


async def publish(make: Callable[[], Publisher], n: int, publishers: int = 1) -> float:
    """Events/s: ``publishers`` broadcasters at once, each publishing its share one by one."""

    async def one(k: int) -> None:
        async with Broadcaster(NullBackend("publish only"), publisher=make()) as broadcaster:
            for i in range(k, n, publishers):
                await broadcaster.publish("position-updates", "tick", {"n": i, "price": 13.5})

    started = time.perf_counter()
    await asyncio.gather(*(one(k) for k in range(publishers)))
    return n / (time.perf_counter() - started)


async def bare_insert(dsn: str, n: int) -> float:
    """Rows/s: what any committed write of the same payload costs, one autocommit INSERT at a time."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("CREATE TABLE IF NOT EXISTS bench_bare (id bigserial PRIMARY KEY, payload jsonb)")
        started = time.perf_counter()
        for i in range(n):
            await conn.execute("INSERT INTO bench_bare (payload) VALUES (%s::jsonb)", (f'{{"n": {i}, "price": 13.5}}',))
        return n / (time.perf_counter() - started)


async def peer(realtime_url: str, key: str, n: int, concurrent: bool) -> float:
    client = AsyncRealtimeClient(realtime_url, token=key)
    channel = client.channel("bench", channel_options(broadcast={"ack": False, "self": False}, private=True))
    limit = asyncio.Semaphore(64)

    async def send(i: int) -> None:
        async with limit:
            await channel.http_send("tick", {"n": i, "price": 13.5})

    started = time.perf_counter()
    if concurrent:
        await asyncio.gather(*(send(i) for i in range(n)))
    else:
        for i in range(n):
            await channel.http_send("tick", {"n": i, "price": 13.5})
    return n / (time.perf_counter() - started)


async def measure(info: dict[str, str], n: int, peer_n: int, runs: int, dsn: str,
                  rest: str | None) -> dict[str, list[float]]:
    url, key = info["url"], info["service_role_key"]
    ways: dict[str, Callable[[], Awaitable[float]]] = {
        "ours, burst": lambda: ours_burst(url, key, n),
        "ours, one by one": lambda: ours_sequential(url, key, n),
        "peer http_send, one by one": lambda: peer(info["realtime_url"], key, peer_n, concurrent=False),
        "peer http_send, concurrent": lambda: peer(info["realtime_url"], key, peer_n, concurrent=True),
        "publish over SQL, one by one": lambda: publish(lambda: SqlPublisher(dsn), n),
        "publish over SQL, 8 publishers": lambda: publish(lambda: SqlPublisher(dsn), n, 8),
        "bare INSERT, one by one": lambda: bare_insert(dsn, n),
    }
    if rest is not None:
        ways["publish over PostgREST, one by one"] = lambda: publish(lambda: RestPublisher(rest, key), n)
        ways["publish over PostgREST, 8 publishers"] = lambda: publish(lambda: RestPublisher(rest, key), n, 8)
    rates: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(runs):
        for name, way in ways.items():  # interleaved, so drift hits every way alike
            rates[name].append(await way())
    return rates


async def section(env: Stack, *, quick: bool, runs: int) -> Section:
    n, peer_n = (300, 20) if quick else (3000, 300)
    dsn = env.database(realtime=True)
    info = env.server(dsn)
    rates = await measure(info, n, peer_n, runs, dsn, env.postgrest(dsn))
    out = Section("throughput", "Broadcast throughput: messages/s through the helpers, and durable events",
                  f"{n:,} broadcasts per way ({peer_n:,} for the peer, about 30 times slower), private topic, "
                  "service role key, to the local server over loopback, every one accepted (HTTP 202); "
                  f"{n:,} published events per way, each a committed transaction (this cluster: fsync off).",
                  "messages/s", ["messages/s"], runs=runs, log_scale=True)
    with stack(durable=True) as durable_env:
        durable_dsn = durable_env.database()
        rates["publish over SQL, one by one (durable)"] = [
            await publish(lambda: SqlPublisher(durable_dsn), n) for _ in range(runs)]
        rates["bare INSERT, one by one (durable)"] = [await bare_insert(durable_dsn, n) for _ in range(runs)]
    for name, values in rates.items():
        out.add(name, [statistics.median(values)])
    best_peer = max(out.value("peer http_send, one by one", "messages/s"),
                    out.value("peer http_send, concurrent", "messages/s"))
    out.ratios += [
        Ratio("ours burst / best peer", out.value("ours, burst", "messages/s") / best_peer, ">= 10x"),
        Ratio("ours one by one / peer one by one", out.value("ours, one by one", "messages/s")
              / out.value("peer http_send, one by one", "messages/s"), ">= 10x"),
    ]
    out.ratios += [
        Ratio("publish / bare INSERT, one by one, fsync=off", out.value("publish over SQL, one by one", "messages/s")
              / out.value("bare INSERT, one by one", "messages/s")),
        Ratio("publish / bare INSERT, one by one, durable",
              out.value("publish over SQL, one by one (durable)", "messages/s")
              / out.value("bare INSERT, one by one (durable)", "messages/s")),
    ]
    out.notes.append("The peer's `http_send` builds a new `httpx.AsyncClient` for every call; ours keeps one pooled "
                     "client and sends a burst as batches of 100.")
    return out


if __name__ == "__main__":
    run_alone(section, __doc__, "300 messages (20 for the peer), 1 run")
