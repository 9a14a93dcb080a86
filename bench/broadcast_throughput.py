"""Broadcast throughput: supabase-push's helpers against the official client's http_send.

    python bench/broadcast_throughput.py [--messages 3000] [--peer-messages 300] [--runs 3]

The local Realtime server runs in its own process. Each run sends messages (private
topic, service role key) four ways and counts messages per second until every one was
accepted (HTTP 202); the peer sends fewer, as it is about 30 times slower:
  ours, burst        Broadcaster (REST backend): all messages at once (asyncio.gather)
  ours, one by one   Broadcaster: await each message before the next
  peer, one by one   realtime's AsyncRealtimeChannel.http_send, awaited per message
  peer, concurrent   http_send for all messages at once (asyncio.gather, 64 in flight)
Medians over the runs; ratios ours / peer (higher is better).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable

from _common import local_server
from realtime import AsyncRealtimeClient

from supabase_push import _sql
from supabase_push.broadcast import Broadcaster, RestBackend
from supabase_push.db import connect
from supabase_push.embedded import LocalPostgres
from supabase_push.local.database import LOCAL_REALTIME_SQL


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


async def peer(realtime_url: str, key: str, n: int, concurrent: bool) -> float:
    client = AsyncRealtimeClient(realtime_url, token=key)
    channel = client.channel("bench", {"config": {"broadcast": {"ack": False, "self": False}, "presence": None,
                                                  "private": True}})
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


async def measure(info: dict[str, str], n: int, peer_n: int, runs: int) -> dict[str, list[float]]:
    url, key = info["url"], info["service_role_key"]
    ways: dict[str, Callable[[], Awaitable[float]]] = {
        "ours, burst": lambda: ours_burst(url, key, n),
        "ours, one by one": lambda: ours_sequential(url, key, n),
        "peer http_send, one by one": lambda: peer(info["realtime_url"], key, peer_n, concurrent=False),
        "peer http_send, concurrent": lambda: peer(info["realtime_url"], key, peer_n, concurrent=True),
    }
    rates: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(runs):
        for name, way in ways.items():  # interleaved, so drift hits every way alike
            rates[name].append(await way())
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--peer-messages", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with LocalPostgres() as pg:
        with connect(pg.dsn) as conn:
            conn.execute(_sql.read_sql(LOCAL_REALTIME_SQL).encode())
        with local_server(pg.dsn) as info:
            rates = asyncio.run(measure(info, args.messages, args.peer_messages, args.runs))
    median = {name: statistics.median(values) for name, values in rates.items()}
    print(f"{args.messages} broadcasts per way ({args.peer_messages} for the peer), median of {args.runs} runs, "
          f"{os.cpu_count()} cores, "
          f"local server over loopback, private topic")
    for name, rate in median.items():
        print(f"{name:<28} {rate:>9,.0f} msg/s")
    best_peer = max(median["peer http_send, one by one"], median["peer http_send, concurrent"])
    print(f"ratio ours burst / best peer:            {median['ours, burst'] / best_peer:.1f}x")
    print(f"ratio ours one by one / peer one by one: "
          f"{median['ours, one by one'] / median['peer http_send, one by one']:.1f}x")


if __name__ == "__main__":
    main()
