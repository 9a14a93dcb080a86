"""Commit-to-callback latency of the Subscriber, per transport, beside the raw clients.

    python bench/subscriber_latency.py [--changes 200] [--gap-ms 5] [--rounds 3] [--quick]

A writer inserts trades one per transaction, stamping each with the time just before it
commits; each receiver computes the delay when its callback runs. One throwaway Postgres
with the triggers in broadcast mode ``both`` (realtime.send and pg_notify on every commit),
the local Realtime server in its own process. Paths, each measured alone, rounds interleaved:
- ours: Subscriber over Realtime, over LISTEN, and polling the change log (SQL, 1 s default);
- peer: the official `realtime` client on the same channel, a raw psycopg LISTEN loop on
  the same NOTIFY, and plain 5-second polling of the table (the design this replaces; its
  commits are spread over 10 s so they fall at every phase of the cycle).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import psycopg
from _common import channel_options, local_server, percentile
from realtime import AsyncRealtimeClient

from supabase_push import schema
from supabase_push._sql import REFERENCE_TABLES, read_sql
from supabase_push.config import Settings
from supabase_push.embedded import LocalPostgres
from supabase_push.subscribe import Subscriber

Receiver = Callable[[list[float]], Awaitable[Callable[[], Awaitable[None]]]]
"""Starts receiving into a list of delays; returns a function that stops it."""


def write(dsn: str, changes: int, gap: float) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for _ in range(changes):
            conn.execute("INSERT INTO trades (symbol, side, quantity, price, order_id) VALUES"
                         " ('SPY', 'buy', 1, 600, %s)", (repr(time.time()),))
            time.sleep(gap)


def delay_of(record: dict[str, Any] | None) -> float:
    assert record is not None
    return (time.time() - float(record["order_id"])) * 1000


async def measure(dsn: str, receiver: Receiver, changes: int, gap: float, patience: float) -> list[float]:
    delays: list[float] = []
    stop = await receiver(delays)
    await asyncio.sleep(0.3)
    try:
        await asyncio.to_thread(write, dsn, changes, gap)
        deadline = time.monotonic() + patience
        while len(delays) < changes and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
    finally:
        await stop()
    return delays


def subscriber(settings: Settings, transport: str, **options: Any) -> Receiver:
    async def start(delays: list[float]) -> Callable[[], Awaitable[None]]:
        with psycopg.connect(settings.database_url or "", autocommit=True) as conn:
            head = conn.execute("SELECT coalesce(max(seq), 0) || ':' || coalesce(max(id), 0) "
                                "FROM supabase_push_changes(0, 0, 100000000, '{trade-updates}')").fetchone()
        sub = Subscriber.from_settings(settings, topics=["trade-updates"], transport=transport,
                                       start=str(head[0]) if head else None, **options)
        sub.on("trade-updates", lambda event: delays.append(delay_of(event.record)))
        await sub.start()
        await asyncio.wait_for(sub.wait_ready(), 10)
        return sub.close

    return start


def raw_realtime(url: str, key: str) -> Receiver:
    async def start(delays: list[float]) -> Callable[[], Awaitable[None]]:
        client = AsyncRealtimeClient(url, key)
        channel = client.channel("trade-updates", channel_options(private=True))
        channel.on_broadcast("INSERT", lambda m: delays.append(delay_of(m["payload"]["record"])))
        await channel.subscribe()
        return client.close

    return start


def running(loop: Coroutine[Any, Any, None], conn: psycopg.AsyncConnection[Any]) -> Callable[[], Awaitable[None]]:
    """Run ``loop`` in a task; the returned function stops it and closes ``conn``."""
    task = asyncio.create_task(loop)

    async def stop() -> None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await conn.close()

    return stop


def raw_listen(dsn: str) -> Receiver:
    async def start(delays: list[float]) -> Callable[[], Awaitable[None]]:
        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        await conn.execute('LISTEN "trade-updates"')

        async def pump() -> None:
            async for note in conn.notifies():
                delays.append(delay_of(json.loads(note.payload)["record"]))

        return running(pump(), conn)

    return start


def plain_polling(dsn: str, interval: float) -> Receiver:
    async def start(delays: list[float]) -> Callable[[], Awaitable[None]]:
        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        row = await (await conn.execute("SELECT coalesce(max(id), 0) FROM trades")).fetchone()
        last = int(row[0]) if row else 0

        async def poll() -> None:
            nonlocal last
            while True:
                await asyncio.sleep(interval)
                cur = await conn.execute("SELECT id, order_id FROM trades WHERE id > %s ORDER BY id", (last,))
                for trade_id, order_id in await cur.fetchall():
                    delays.append(delay_of({"order_id": order_id}))
                    last = trade_id

        return running(poll(), conn)

    return start


def summary(delays: list[list[float]]) -> tuple[float, float, int]:
    """Median over rounds of each round's p50 and p99, and the fewest received in a round."""
    return (statistics.median(statistics.median(d) if d else float("nan") for d in delays),
            statistics.median(percentile(d, 0.99) if d else float("nan") for d in delays),
            min(len(d) for d in delays))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--gap-ms", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="50 changes, 1 round (a smoke run)")
    args = parser.parse_args()
    if args.quick:
        args.changes, args.rounds = 50, 1
    gap = args.gap_ms / 1000
    with LocalPostgres() as pg:
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            conn.execute(read_sql(REFERENCE_TABLES).encode())
            conn.execute(read_sql("local_realtime.sql").encode())
            schema.apply(conn, broadcast_mode="both")
        with local_server(pg.dsn) as info:
            key = info["service_role_key"]
            realtime_settings = Settings(supabase_url=info["url"], service_role_key=key, database_url=pg.dsn)
            plain = Settings(database_url=pg.dsn)
            paths: dict[str, tuple[Receiver, float]] = {
                "ours: Subscriber, Realtime": (subscriber(realtime_settings, "realtime"), 5),
                "peer: official realtime client": (raw_realtime(info["realtime_url"], key), 5),
                "ours: Subscriber, LISTEN": (subscriber(plain, "listen"), 5),
                "peer: raw psycopg LISTEN loop": (raw_listen(pg.dsn), 5),
                "ours: Subscriber, polling (1 s)": (subscriber(plain, "poll", poll_interval=1.0), 5),
            }
            results: dict[str, list[list[float]]] = {name: [] for name in paths}
            for _ in range(args.rounds):
                for name, (receiver, patience) in paths.items():
                    results[name].append(await measure(pg.dsn, receiver, args.changes, gap, patience))
            five = "peer: plain 5 s polling"
            # Spread over 10 s, so the commits fall at every phase of the 5 s cycle.
            results[five] = [await measure(pg.dsn, plain_polling(pg.dsn, 5.0), args.changes,
                                           max(gap, 10 / args.changes), 11)]
        print(f"{args.changes} single-row commits, {args.gap_ms:g} ms apart, median of {args.rounds} round(s); "
              f"PG {pg.version}, 2-core loopback, broadcast mode both")
        figures = {name: summary(delays) for name, delays in results.items()}
        for name, (median, p99, got) in figures.items():
            print(f"{name:<34} p50 {median:8.2f} ms   p99 {p99:8.2f} ms   received {got}/{args.changes}")
        p50 = {name: figures[name][0] for name in figures}
        print("ratios of p50 (lower is better for the first two):")
        for label, ours, peer in [
            ("Subscriber Realtime / official client", "ours: Subscriber, Realtime", "peer: official realtime client"),
            ("Subscriber LISTEN / raw LISTEN loop", "ours: Subscriber, LISTEN", "peer: raw psycopg LISTEN loop"),
            ("5 s polling / Subscriber LISTEN", five, "ours: Subscriber, LISTEN"),
            ("5 s polling / Subscriber Realtime", five, "ours: Subscriber, Realtime"),
        ]:
            print(f"  {label:<40} {p50[ours] / p50[peer]:8.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
