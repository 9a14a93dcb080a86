"""Commit-to-subscriber latency through the local Realtime server, beside LISTEN/NOTIFY.

    python bench/change_latency.py [--changes 200] [--gap-ms 5]

A writer inserts rows one per transaction, stamping each with the time just before it
commits; the receiver (the official Python `realtime` client, in this process) computes
the delay when the change arrives. Three paths on the same throwaway Postgres:
- postgres_changes (logical decoding of publication supabase_realtime, streamed);
- database broadcast from this project's trigger SQL (realtime.send -> realtime.messages);
- peer: a bare trigger calling pg_notify, received by psycopg LISTEN (the floor).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import psycopg
from _common import channel_options, local_server, percentile
from realtime import AsyncRealtimeClient
from realtime import RealtimePostgresChangesListenEvent as Event

from supabase_push import schema
from supabase_push._sql import REFERENCE_TABLES, read_sql
from supabase_push.embedded import LocalPostgres

SETUP = """
CREATE TABLE bench_fills (id bigserial PRIMARY KEY, sent double precision NOT NULL, px numeric);
CREATE TABLE bench_plain (id bigserial PRIMARY KEY, sent double precision NOT NULL, px numeric);
CREATE FUNCTION bench_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_notify('bench', row_to_json(NEW)::text); RETURN NULL; END $$;
CREATE TRIGGER bench_notify AFTER INSERT ON bench_plain FOR EACH ROW EXECUTE FUNCTION bench_notify();
ALTER PUBLICATION supabase_realtime ADD TABLE bench_fills;
"""


def write(dsn: str, table: str, changes: int, gap: float) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for n in range(changes):
            if table == "trades":
                conn.execute("INSERT INTO trades (symbol, side, quantity, price, order_id) VALUES"
                             " ('SPY', 'buy', 1, 600, %s)", (repr(time.time()),))
            else:
                conn.execute(f"INSERT INTO {table} (sent, px) VALUES (%s, %s)", (time.time(), n))
            time.sleep(gap)


async def measure(dsn: str, table: str, changes: int, gap: float,
                  subscribe: Callable[[list[float]], Any]) -> list[float]:
    delays: list[float] = []
    await subscribe(delays)
    await asyncio.sleep(0.3)
    await asyncio.to_thread(write, dsn, table, changes, gap)
    for _ in range(100):
        if len(delays) >= changes:
            break
        await asyncio.sleep(0.05)
    return delays


def report(name: str, delays: list[float], expected: int) -> float:
    p50 = statistics.median(delays)
    p99 = percentile(delays, 0.99)
    print(f"{name:<44} p50 {p50:6.2f} ms   p99 {p99:6.2f} ms   received {len(delays)}/{expected}")
    return p50


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--gap-ms", type=float, default=5)
    args = parser.parse_args()
    with LocalPostgres() as pg:
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            conn.execute(read_sql(REFERENCE_TABLES).encode())
            conn.execute(read_sql("local_realtime.sql").encode())
            schema.apply(conn)
            conn.execute(SETUP.encode())
        print(f"{args.changes} single-row commits, {args.gap_ms} ms apart, PG {pg.version}, loopback")
        with local_server(pg.dsn) as info:
            await compare(pg.dsn, info, args.changes, args.gap_ms / 1000)


async def compare(dsn: str, info: dict[str, Any], count: int, gap: float) -> None:
    client = AsyncRealtimeClient(info["realtime_url"], info["service_role_key"])
    listen_conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    await listen_conn.execute("LISTEN bench")

    async def changes(delays: list[float]) -> None:
        channel = client.channel("bench-changes")
        channel.on_postgres_changes(Event.Insert, lambda p: delays.append(
            (time.time() - p["data"]["record"]["sent"]) * 1000), table="bench_fills")  # type: ignore[index]
        await channel.subscribe()

    async def broadcast(delays: list[float]) -> None:
        channel = client.channel("trade-updates", channel_options(private=True))
        channel.on_broadcast("INSERT", lambda m: delays.append(
            (time.time() - float(m["payload"]["record"]["order_id"])) * 1000))
        await channel.subscribe()

    async def notify(delays: list[float]) -> None:
        async def pump() -> None:
            async for note in listen_conn.notifies():
                delays.append((time.time() - json.loads(note.payload)["sent"]) * 1000)
        asyncio.get_running_loop().create_task(pump())

    try:
        a = report("postgres_changes (local server)",
                   await measure(dsn, "bench_fills", count, gap, changes), count)
        b = report("database broadcast, trigger SQL (local server)",
                   await measure(dsn, "trades", count, gap, broadcast), count)
        c = report("peer: trigger pg_notify + psycopg LISTEN",
                   await measure(dsn, "bench_plain", count, gap, notify), count)
        print(f"ratio p50 vs peer: postgres_changes {a / c:.2f}x   database broadcast {b / c:.2f}x")
    finally:
        await listen_conn.close()
        await client.close()


if __name__ == "__main__":
    asyncio.run(main())
