"""Commit-to-callback latency of the Subscriber, per transport, beside the raw clients.

    python bench/subscriber_latency.py [--runs 3] [--quick]      (all sections: python -m bench)

A writer inserts trades one per transaction, stamping each with the time just before it
commits; each receiver computes the delay when its callback runs. Three databases on one
throwaway Postgres: plain (our triggers push by NOTIFY: a hint without the row, which the
Subscriber reads by cursor), the peers' own design (a row trigger that NOTIFYs the row, no
change log) and one with the local Realtime server's schema (our triggers push by
realtime.send), the server in its own process. Each path is measured alone, rounds
interleaved:
- ours: Subscriber over LISTEN, over Realtime, and polling the change log (1 s);
- peers: a raw psycopg LISTEN loop and encode/broadcaster's Postgres backend (asyncpg), both
  on the row-NOTIFY trigger, the
  official `realtime` client (database broadcast, and postgres_changes), and plain
  5-second polling of the table through PostgREST (the design this replaces; its commits
  are spread over 10 s so they fall at every phase of the cycle).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import httpx
import psycopg
from _common import channel_options
from _report import Ratio, Section, median, percentile
from _stack import Stack, run_alone
from broadcaster import Broadcast
from realtime import AsyncRealtimeClient
from realtime import RealtimePostgresChangesListenEvent as Event

from supabase_push.changelog import aread_changes, aread_head
from supabase_push.config import Settings
from supabase_push.events import Cursor
from supabase_push.local import tokens
from supabase_push.subscribe import Subscriber

QUIET = "ours: Subscriber, LISTEN, each commit after a quiet second"
Stop = Callable[[], Awaitable[None]]
Receiver = Callable[[list[float]], Awaitable[Stop]]
"""Starts receiving into a list of delays; returns a function that stops it."""


COMMITS: dict[str, list[float]] = {}
"""Per database: how long each INSERT (with its triggers and commit) took, in ms."""


def write(dsn: str, changes: int, gap: float, jitter: float = 0.0) -> None:
    """``changes`` commits ``gap`` s apart, plus up to ``jitter`` s at random (so that they fall at every phase
    of a loop that wakes at fixed intervals)."""
    took = COMMITS.setdefault(dsn, []) if not jitter else []  # the 'commit alone' rows: commits 5 ms apart
    with psycopg.connect(dsn, autocommit=True) as conn:
        for _ in range(changes):
            started = time.time()
            conn.execute("INSERT INTO trades (symbol, side, quantity, price, order_id) VALUES"
                         " ('SPY', 'buy', 1, 600, %s)", (repr(started),))
            took.append((time.time() - started) * 1000)
            time.sleep(gap + random.uniform(0, jitter))  # noqa: S311 (a phase, not a secret)


async def floor_parts(dsn: str, samples: int) -> tuple[list[float], list[float]]:
    """What the LISTEN path adds to a commit, each part alone, in ms: a stamper round of one single-row
    transaction (its own transaction and flush, the NOTIFY included), and the Subscriber's read of that
    change by cursor (the query, and the event built)."""
    rounds: list[float] = []
    reads: list[float] = []
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        for _ in range(samples):
            await conn.execute("INSERT INTO trades (symbol, side, quantity, price, order_id) VALUES"
                               " ('SPY', 'buy', 1, 600, 'floor')")
            started = time.perf_counter()
            await conn.execute("SELECT supabase_push.stamp_v2(true)")
            rounds.append((time.perf_counter() - started) * 1000)
            head = await aread_head(conn)
            started = time.perf_counter()
            await aread_changes(conn, Cursor(head.seq, head.id - 1), topics=["trade-updates"], source="listen",
                                stamp_first=False)
            reads.append((time.perf_counter() - started) * 1000)
    return rounds, reads


def delay_of(record: dict[str, Any] | None) -> float:
    assert record is not None
    return (time.time() - float(record["order_id"])) * 1000


async def measure(dsn: str, receiver: Receiver, changes: int, gap: float, patience: float,
                  jitter: float = 0.0) -> list[float]:
    delays: list[float] = []
    stop = await receiver(delays)
    await asyncio.sleep(0.3)
    try:
        await asyncio.to_thread(write, dsn, changes, gap, jitter)
        deadline = time.monotonic() + patience
        while len(delays) < changes and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
    finally:
        await stop()
    return delays


def running(loop: Coroutine[Any, Any, None], *closers: Callable[[], Awaitable[Any]]) -> Stop:
    """Run ``loop`` in a task; the returned function stops it and runs ``closers``."""
    task = asyncio.create_task(loop)

    async def stop() -> None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        for close in closers:
            await close()

    return stop


def subscriber(settings: Settings, transport: str, **options: Any) -> Receiver:
    async def start(delays: list[float]) -> Stop:
        sub = Subscriber.from_settings(settings, topics=["trade-updates"], transport=transport, start="now",
                                       **options)
        sub.on("trade-updates", lambda event: delays.append(delay_of(event.record)))
        await sub.start()
        await asyncio.wait_for(sub.wait_ready(), 10)
        return sub.close

    return start


def raw_realtime(url: str, key: str, postgres_changes: bool = False) -> Receiver:
    async def start(delays: list[float]) -> Stop:
        client = AsyncRealtimeClient(url, key)
        if postgres_changes:
            channel = client.channel("bench-changes")
            channel.on_postgres_changes(Event.Insert, lambda p: delays.append(
                delay_of(p["data"]["record"])), table="trades")
        else:
            channel = client.channel("trade-updates", channel_options(private=True))
            channel.on_broadcast("INSERT", lambda m: delays.append(delay_of(m["payload"]["record"])))
        await channel.subscribe()
        return client.close

    return start


def raw_listen(dsn: str) -> Receiver:
    async def start(delays: list[float]) -> Stop:
        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        await conn.execute('LISTEN "trade-updates"')

        async def pump() -> None:
            async for note in conn.notifies():
                delays.append(delay_of(json.loads(note.payload)["record"]))

        return running(pump(), conn.close)

    return start


def broadcaster_peer(dsn: str) -> Receiver:
    async def start(delays: list[float]) -> Stop:
        broadcast = Broadcast(dsn)
        await broadcast.connect()
        ready = asyncio.Event()

        async def pump() -> None:
            async with broadcast.subscribe(channel="trade-updates") as subscriber:
                ready.set()
                async for event in subscriber:  # type: ignore[union-attr]  # broadcaster types it loosely
                    if event is not None:
                        delays.append(delay_of(json.loads(event.message)["record"]))

        stop = running(pump(), broadcast.disconnect)
        await ready.wait()
        return stop

    return start


def rest_polling(rest_url: str, interval: float) -> Receiver:
    key = tokens.mint("service_role", tokens.DEV_SECRET)

    async def start(delays: list[float]) -> Stop:
        http = httpx.AsyncClient(base_url=rest_url, headers={"Authorization": f"Bearer {key}"})
        newest = (await http.get("/trades", params={"select": "id", "order": "id.desc", "limit": "1"})).json()
        last = int(newest[0]["id"]) if newest else 0

        async def poll() -> None:
            nonlocal last
            while True:
                await asyncio.sleep(interval)
                rows = (await http.get("/trades", params={"select": "id,order_id", "id": f"gt.{last}",
                                                          "order": "id"})).json()
                for row in rows:
                    delays.append(delay_of(row))
                    last = int(row["id"])

        return running(poll(), http.aclose)

    return start


async def section(env: Stack, *, quick: bool, runs: int) -> Section:
    changes, gap = (50, 0.005) if quick else (200, 0.005)
    plain = env.database()
    seed = env.plain_notify_database()  # the peers' own design: a trigger that NOTIFYs the row
    realtime_db = env.database(realtime=True)
    info = env.server(realtime_db)
    rest = env.postgrest(realtime_db)
    key = info["service_role_key"]
    ours_realtime = Settings(supabase_url=info["url"], service_role_key=key, database_url=realtime_db)
    paths: dict[str, tuple[str, Receiver]] = {
        "ours: Subscriber, LISTEN": (plain, subscriber(Settings(database_url=plain), "listen")),
        "peer: raw psycopg LISTEN loop": (seed, raw_listen(seed)),
        "peer: broadcaster, Postgres backend": (seed, broadcaster_peer(seed)),
        "ours: Subscriber, Realtime": (realtime_db, subscriber(ours_realtime, "realtime")),
        "peer: official client, database broadcast": (realtime_db, raw_realtime(info["realtime_url"], key)),
        "peer: official client, postgres_changes": (realtime_db, raw_realtime(info["realtime_url"], key, True)),
        "ours: Subscriber, polling (1 s)": (plain, subscriber(Settings(database_url=plain), "poll",
                                                              poll_interval=1.0)),
    }
    results: dict[str, list[list[float]]] = {name: [] for name in paths}
    for _ in range(runs):
        for name, (dsn, receiver) in paths.items():
            results[name].append(await measure(dsn, receiver, changes, gap, 5))
    five = "peer: 5 s REST polling" if rest else "peer: 5 s polling (SQL; no PostgREST binary)"
    five_receiver = rest_polling(rest, 5.0) if rest and not quick else None  # 20 s of a 1-run smoke test
    if five_receiver is not None:
        results[five] = [await measure(realtime_db, five_receiver, changes, max(gap, 10 / changes), 11)]
    # The stamping loop slows to its quiet pace (idle_ms, 10 ms) after a quiet second: a change that comes
    # after one waits for the loop's next look, up to that pace.
    quiet_changes = 5 if quick else 20
    results[QUIET] = [await measure(plain, subscriber(Settings(database_url=plain), "listen"), quiet_changes,
                                    1.2, 5, jitter=0.2)]

    out = Section("latency", "Commit-to-callback latency",
                  f"{changes} single-row commits, {gap * 1000:g} ms apart, per path; p50/p95/p99 of each run, "
                  "median over runs.", "ms", ["p50", "p95", "p99", "received %"], runs=runs, log_scale=True,
                  plotted=["p50", "p95", "p99"])
    for name, delays in results.items():
        out.add(name, [median([median(d) for d in delays]), median([percentile(d, 0.95) for d in delays]),
                       median([percentile(d, 0.99) for d in delays]),
                       100 * min(len(d) for d in delays) / (quiet_changes if name == QUIET else changes)])
    for label, dsn in (("commit alone: INSERT + triggers, NOTIFY path", plain),
                       ("commit alone: INSERT + triggers, realtime.send path", realtime_db)):
        took = COMMITS[dsn]
        out.add(label, [median(took), percentile(took, 0.95), percentile(took, 0.99), None])
    rounds, reads = await floor_parts(plain, changes)
    for label, took in (("a stamper round alone: one single-row transaction, NOTIFY path", rounds),
                        ("a read by cursor alone: that change, as the Subscriber reads it", reads)):
        out.add(label, [median(took), percentile(took, 0.95), percentile(took, 0.99), None])
    p50 = {name: out.value(name, "p50") for name in out.rows}
    # Ours cannot be faster than the commit, the wait for the loop's next round (it polls every 1 ms, so half
    # of that on average), the round and the read; the raw loop is the commit and a NOTIFY.
    floor = (p50["commit alone: INSERT + triggers, NOTIFY path"] + 0.5
             + p50["a stamper round alone: one single-row transaction, NOTIFY path"]
             + p50["a read by cursor alone: that change, as the Subscriber reads it"])
    out.ratios += [
        Ratio("Subscriber LISTEN p50 / raw LISTEN loop", p50["ours: Subscriber, LISTEN"]
              / p50["peer: raw psycopg LISTEN loop"], "<= 2.5x"),
        Ratio("LISTEN floor (commit + 0.5 ms + round + read) / raw LISTEN loop",
              floor / p50["peer: raw psycopg LISTEN loop"]),
        Ratio("Subscriber LISTEN p50 / that floor", p50["ours: Subscriber, LISTEN"] / floor),
        Ratio("Subscriber LISTEN p50 / broadcaster", p50["ours: Subscriber, LISTEN"]
              / p50["peer: broadcaster, Postgres backend"]),
        Ratio("Subscriber LISTEN p50 / 1 ms", p50["ours: Subscriber, LISTEN"] / 1.0, "<= 1x"),
        Ratio("Subscriber Realtime p50 / official client", p50["ours: Subscriber, Realtime"]
              / p50["peer: official client, database broadcast"]),
        Ratio("Subscriber Realtime p50 / 5 ms", p50["ours: Subscriber, Realtime"] / 5.0, "<= 1x"),
        Ratio("local server postgres_changes p50 / 5 ms", p50["peer: official client, postgres_changes"] / 5.0,
              "<= 1x"),
    ]
    if five in p50:
        out.ratios.append(Ratio("5 s polling p50 / Subscriber Realtime", p50[five] / p50["ours: Subscriber, Realtime"]))
    out.ratios.append(Ratio("Subscriber LISTEN p50, each commit after a quiet second / back to back",
                            p50[QUIET] / p50["ours: Subscriber, LISTEN"]))
    out.notes.append(
        "The commit is inside every figure: the writer stamps the row just before it commits, so a path's latency "
        "is the commit (the two 'commit alone' rows: the INSERT with its triggers, as the writer saw it) plus "
        "delivery. Where we lose on LISTEN, and why: the peers' trigger NOTIFYs the row itself, which any role "
        "that may connect can LISTEN to (PostgreSQL checks no privilege there), and their commit has no change "
        "log; ours NOTIFYs only where the change is, and the Subscriber then reads it by cursor with its own "
        "rights (one query), so nobody else learns the row and a forged NOTIFY delivers nothing. And ours is "
        "ordered after commit: the stamper's loop (in the Subscriber's process here) notices the commit within "
        "a millisecond or so, numbers it in its own transaction, which commits and flushes before it pushes; "
        "the writer never waits for that. The Realtime paths include the hop through the local server "
        "(logical decoding, then the websocket). The LISTEN floor adds up what this design cannot skip, each "
        "part measured alone in this run (the rows 'commit alone', 'a stamper round alone', 'a read by cursor "
        "alone', and half the loop's 1 ms pause): the 2.5x target is below it wherever a bare commit and "
        "NOTIFY take less than the round and the read, as on this machine. pg_sleep waits whole milliseconds, "
        "so the loop cannot poll faster; waking it at each commit would need the writers to NOTIFY, which "
        "serialises them (see the trigger-cost section).")
    out.notes.append(
        f"The row '{QUIET}' (one run of {quiet_changes} commits, 1.2-1.4 s apart at random): after a quiet "
        "second the stamping loop looks for new commits every idle_ms (10 ms since schema 7; 50 ms before, when "
        "such a change waited 25 ms on average), so a change after a pause waits for its next look as well. "
        "The other rows' commits come 5 ms apart, where the loop keeps its fast pace.")
    return out


if __name__ == "__main__":
    run_alone(section, __doc__, "50 changes, 1 run")
