"""Fan-out latency of the local Realtime server, beside a bare websocket relay.

    python bench/fanout.py [--clients 500] [--rounds 30]

Both servers run in their own process; this process holds the receivers and one sender.
Each round the sender sends one message; the time to each receiver is measured. Printed:
p50 and p99 over all deliveries and the mean time until the last receiver has it, for
supabase-push's server (Phoenix protocol, channels, JSON re-encoding) and for the peer
(`bench/peer_ws_broadcast.py`, `websockets.broadcast` of the same bytes), with the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import local_server, percentile
from _report import Ratio, Section
from _stack import Stack
from websockets.asyncio.client import ClientConnection, connect

from supabase_push.embedded import LocalPostgres

HERE = Path(__file__).resolve().parent


async def run_rounds(sender: ClientConnection, receivers: list[ClientConnection], rounds: int,
                     make_frame: Any) -> tuple[list[float], list[float]]:
    deliveries: list[float] = []
    lasts: list[float] = []
    for n in range(rounds):
        waits = [asyncio.ensure_future(ws.recv()) for ws in receivers]
        await asyncio.sleep(0.05)
        sent = time.perf_counter()
        await sender.send(make_frame(n))
        times: list[float] = []
        for fut in asyncio.as_completed(waits):
            await fut
            times.append((time.perf_counter() - sent) * 1000)
        deliveries += times
        lasts.append(max(times))
    return deliveries, lasts


async def ours(clients: int, rounds: int, dsn: str) -> tuple[list[float], list[float]]:
    join = json.dumps({"topic": "realtime:fanout", "event": "phx_join", "payload": {"config": {}}, "ref": "1",
                       "join_ref": "1"})
    with local_server(dsn) as info:
        url = f"{info['realtime_url']}/websocket?apikey={info['anon_key']}&vsn=1.0.0"
        sockets = []
        for _ in range(clients + 1):
            ws = await connect(url, compression=None, max_queue=None)
            await ws.send(join)
            await ws.recv()
            sockets.append(ws)
        sender, receivers = sockets[0], sockets[1:]

        def frame(n: int) -> str:
            return json.dumps({"topic": "realtime:fanout", "event": "broadcast", "ref": None, "join_ref": "1",
                               "payload": {"type": "broadcast", "event": "tick", "payload": {"n": n, "px": 101.25}}})

        result = await run_rounds(sender, receivers, rounds, frame)
        await asyncio.gather(*(ws.close() for ws in sockets))
        return result


async def peer(clients: int, rounds: int) -> tuple[list[float], list[float]]:
    proc = subprocess.Popen([sys.executable, str(HERE / "peer_ws_broadcast.py")], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    try:
        sockets = [await connect(f"ws://127.0.0.1:{port}", compression=None, max_queue=None)
                   for _ in range(clients + 1)]
        result = await run_rounds(sockets[0], sockets[1:], rounds,
                                  lambda n: json.dumps({"event": "tick", "payload": {"n": n, "px": 101.25}}))
        await asyncio.gather(*(ws.close() for ws in sockets))
        return result
    finally:
        proc.terminate()
        proc.wait()


async def section(env: Stack, *, quick: bool, runs: int) -> Section:
    counts, rounds = ((1, 100), 5) if quick else ((1, 100, 1000), 30)
    dsn = env.database(realtime=True)
    out = Section("fanout", "Fan-out: one broadcast to N websocket subscribers",
                  f"Per N: {rounds} rounds; each round one message, time to each receiver (p50, p99 over all "
                  "deliveries) and until the last has it (mean). Receivers share one Python process.", "ms",
                  ["p50", "p99", "all delivered"], runs=runs, log_scale=True)
    for clients in counts:
        mine = {"p50": [], "p99": [], "last": []}  # type: dict[str, list[float]]
        theirs = {"p50": [], "p99": [], "last": []}  # type: dict[str, list[float]]
        for _ in range(runs):
            for into, (deliveries, lasts) in ((mine, await ours(clients, rounds, dsn)),
                                              (theirs, await peer(clients, rounds))):
                into["p50"].append(statistics.median(deliveries))
                into["p99"].append(percentile(deliveries, 0.99))
                into["last"].append(statistics.mean(lasts))
        out.add(f"ours: local server, {clients:,} subscriber(s)", [statistics.median(mine[k]) for k in mine])
        out.add(f"peer: websockets.broadcast relay, {clients:,}", [statistics.median(theirs[k]) for k in theirs])
        out.ratios.append(Ratio(f"{clients:,} subscribers: all delivered, ours / relay",
                                statistics.median(mine["last"]) / statistics.median(theirs["last"])))
    out.notes.append("The relay forwards the same bytes with no protocol; ours parses Phoenix frames, routes by "
                     "channel and writes through one task per client.")
    return out


def report(name: str, deliveries: list[float], lasts: list[float]) -> dict[str, float]:
    row = {"p50": statistics.median(deliveries), "p99": percentile(deliveries, 0.99),
           "last": statistics.mean(lasts)}
    print(f"{name:<34} p50 {row['p50']:7.2f} ms   p99 {row['p99']:7.2f} ms   all delivered {row['last']:7.2f} ms")
    return row


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    with LocalPostgres() as pg:
        print(f"fan-out of one broadcast to {args.clients} websocket clients, {args.rounds} rounds, loopback")
        mine = report("supabase-push local server", *await ours(args.clients, args.rounds, pg.dsn))
        theirs = report("peer: websockets.broadcast relay", *await peer(args.clients, args.rounds))
    print("ratio (ours / peer, lower is better): "
          + "   ".join(f"{k} {mine[k] / theirs[k]:.2f}x" for k in ("p50", "p99", "last")))


if __name__ == "__main__":
    asyncio.run(main())
