"""SSE relay fan-out: one change to N browsers' streams, beside a bare Starlette SSE relay.

    python bench/relay_fanout.py [--runs 3] [--quick]

Both relays run in their own process (`supabase-push relay`, and `bench/peer_sse_relay.py`:
one LISTEN, every payload written as-is to every stream). This process holds N SSE clients
(aiohttp), each a different user, all on `trade-updates` (a shared topic, so every change
goes to every stream), and one writer. Each round the writer commits one trade; the time
from before the INSERT to each client reading the event is measured: p50 and p99 over all
deliveries, the mean time until the last client has it, and the relay's memory per open
stream (resident set growth from idle to N streams, divided by N).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import jwt
import psutil
import psycopg
from _common import percentile
from _report import Ratio, Section
from _stack import Stack, run_alone

HERE = Path(__file__).resolve().parent
SECRET = "bench-relay-secret-of-at-least-32-bytes"  # noqa: S105 (a throwaway relay's)
COLUMNS = ["p50", "p99", "all delivered", "kB per stream"]


@contextlib.asynccontextmanager
async def process(args: list[str], env: dict[str, str] | None = None) -> AsyncIterator[tuple[str, psutil.Process]]:
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
    assert proc.stdout is not None
    line = proc.stdout.readline()
    url = json.loads(line)["url"] if line.startswith("{") else f"http://127.0.0.1:{int(line)}"
    try:
        yield url, psutil.Process(proc.pid)
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def ours(dsn: str) -> contextlib.AbstractAsyncContextManager[tuple[str, psutil.Process]]:
    return process([sys.executable, "-m", "supabase_push", "relay", "--db-url", dsn, "--port", "0", "--json",
                    "--topic", "trade-updates", "--shared-topic", "trade-updates", "--transport", "listen",
                    "--max-per-user", "1"], env={"SUPABASE_JWT_SECRET": SECRET})


def peer(dsn: str) -> contextlib.AbstractAsyncContextManager[tuple[str, psutil.Process]]:
    return process([sys.executable, str(HERE / "peer_sse_relay.py"), dsn, "trade-updates"])


async def measure(relay: contextlib.AbstractAsyncContextManager[tuple[str, psutil.Process]], dsn: str,
                  clients: int, rounds: int) -> dict[str, float]:
    now = int(time.time())
    tokens = [jwt.encode({"sub": f"user-{n}", "role": "authenticated", "exp": now + 3600}, SECRET)
              for n in range(clients)]
    received: list[list[float]] = [[] for _ in range(clients)]
    all_in = [asyncio.Event() for _ in range(rounds)]
    counts = [0] * rounds

    async def client(session: aiohttp.ClientSession, url: str, n: int, opened: asyncio.Event) -> None:
        async with session.get(f"{url}/events", params={"topics": "trade-updates"},
                               headers={"Authorization": f"Bearer {tokens[n]}"}) as response:
            response.raise_for_status()
            opened.set()
            while True:
                line = await response.content.readline()
                if not line:
                    return
                if line.startswith(b"data:"):
                    got = len(received[n])
                    received[n].append(time.perf_counter())
                    counts[got] += 1
                    if counts[got] == clients:
                        all_in[got].set()

    connector = aiohttp.TCPConnector(limit=0)
    async with relay as (url, proc), \
            aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout()) as session, \
            await psycopg.AsyncConnection.connect(dsn, autocommit=True) as writer:
        idle = proc.memory_info().rss
        tasks, opened = [], []
        for n in range(clients):
            opened.append(asyncio.Event())
            tasks.append(asyncio.create_task(client(session, url, n, opened[-1])))
            if n % 100 == 99:
                await asyncio.gather(*(e.wait() for e in opened))
        await asyncio.gather(*(e.wait() for e in opened))
        await asyncio.sleep(0.5)
        sent = []
        for r in range(rounds):
            await asyncio.sleep(0.05)
            sent.append(time.perf_counter())
            await writer.execute("INSERT INTO trades (symbol, side, quantity, price) VALUES ('FAN', 'buy', 1, 1)")
            await asyncio.wait_for(all_in[r].wait(), 60)
        streams = proc.memory_info().rss
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    deliveries = [(times[r] - sent[r]) * 1000 for times in received for r in range(rounds)]
    lasts = [max(times[r] for times in received) - sent[r] for r in range(rounds)]
    return {"p50": statistics.median(deliveries), "p99": percentile(deliveries, 0.99),
            "all delivered": statistics.mean(lasts) * 1000, "kB per stream": max(0, streams - idle) / clients / 1024}


async def section(env: Stack, *, quick: bool, runs: int) -> Section:
    counts, rounds = ((100,), 5) if quick else ((100, 1000), 30)
    dsn = env.database(broadcast="notify")
    seed = env.plain_notify_database()  # the peer relays its own design's NOTIFY (the row, from a trigger)
    out = Section("relay_fanout", "SSE relay: one change to N browser streams",
                  f"Per N: {rounds} rounds; each round one committed trade, time from before the INSERT to each "
                  "SSE client reading it (p50, p99 over all deliveries) and until the last has it (mean); memory: the "
                  "relay's resident set growth from idle to N open streams, per stream. Every client a different "
                  "user; clients share one Python process (aiohttp).", "ms", COLUMNS, runs=runs, log_scale=True,
                  plotted=["p50", "p99", "all delivered"])
    for clients in counts:
        mine: dict[str, list[float]] = {c: [] for c in COLUMNS}
        theirs: dict[str, list[float]] = {c: [] for c in COLUMNS}
        for _ in range(runs):
            for into, relay, db in ((mine, ours(dsn), dsn), (theirs, peer(seed), seed)):
                for column, value in (await measure(relay, db, clients, rounds)).items():
                    into[column].append(value)
        out.add(f"ours: supabase-push relay, {clients:,} streams", [statistics.median(mine[c]) for c in COLUMNS])
        out.add(f"peer: bare Starlette SSE relay, {clients:,}", [statistics.median(theirs[c]) for c in COLUMNS])
        out.ratios.append(Ratio(f"{clients:,} streams: all delivered, ours / bare relay",
                                statistics.median(mine["all delivered"]) / statistics.median(theirs["all delivered"])))
        out.ratios.append(Ratio(f"{clients:,} streams: memory per stream, ours / bare relay",
                                statistics.median(mine["kB per stream"])
                                / max(0.01, statistics.median(theirs["kB per stream"]))))
    out.notes.append("The bare relay has no auth, no per-user rows, no resume and no bound on a slow stream; ours "
                     "checks each change against each stream's user and topics, keeps a replay ring and a bounded "
                     "buffer per stream. Both include the commit and the LISTEN delivery.")
    return out


if __name__ == "__main__":
    run_alone(section, __doc__, "100 streams, 5 rounds, 1 run")
