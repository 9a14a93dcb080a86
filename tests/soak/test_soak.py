"""Soak: 8 writers, three subscribers on different transports, a random fault every 0.5 s.

At the end every subscriber has every change exactly once, in cursor order. The short run
is part of the test command; `pytest -m soak` runs the full 20,000 changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import psycopg
import pytest

from supabase_push.changelog import aread_changes
from supabase_push.config import Settings
from supabase_push.embedded import LocalPostgres
from supabase_push.events import START, ChangeEvent
from supabase_push.local import LocalRealtime, ServerConfig, tokens
from supabase_push.local.stack import prepare
from supabase_push.subscribe import RestReader, Subscriber

from ..postgrest import PostgREST, free_port

TOPICS = ["position-updates", "trade-updates", "portfolio-updates"]


@dataclass
class Watched:
    name: str
    subscriber: Subscriber
    got: list[ChangeEvent] = field(default_factory=list)
    slow: bool = False


async def soak(changes: int, seconds_between_faults: float = 0.5, seed: int = 5) -> dict[str, object]:
    rng = random.Random(seed)
    faults: Counter[str] = Counter()
    with LocalPostgres() as pg:
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            prepare(conn, broadcast_mode="both")
        port = free_port()
        servers = [await LocalRealtime(pg.dsn, ServerConfig(port=port)).start()]
        with PostgREST(pg.dsn, tokens.DEV_SECRET) as api:
            realtime = Settings(supabase_url=servers[0].url, service_role_key=servers[0].service_role_key,
                                database_url=pg.dsn)
            watched = [
                Watched("realtime", Subscriber.from_settings(realtime, topics=TOPICS, transport="realtime",
                                                             poll_interval=0.2, liveness_interval=1, max_backoff=1)),
                Watched("listen", Subscriber.from_settings(Settings(database_url=pg.dsn), topics=TOPICS,
                                                           transport="listen", poll_interval=0.2, max_backoff=1)),
                Watched("poll-rest", Subscriber(reader=RestReader(api.url, tokens.mint("service_role",
                                                                                       tokens.DEV_SECRET)),
                                                topics=TOPICS, poll_interval=0.2, max_backoff=1, queue_size=50)),
            ]

            async def consume(w: Watched) -> None:
                async for event in w.subscriber:
                    w.got.append(event)
                    if w.slow:  # a consumer that falls behind: its queue fills, reading slows
                        await asyncio.sleep(0.5)
                        w.slow = False

            async def restart_server() -> None:
                await servers[-1].stop()
                await asyncio.sleep(0.2)
                servers.append(await LocalRealtime(pg.dsn, ServerConfig(port=port)).start())

            async def drop_sockets() -> None:
                for session in list(servers[-1].sessions):
                    await session.close_socket(1011, "soak")

            async def terminate_listen() -> None:
                async with await psycopg.AsyncConnection.connect(pg.dsn, autocommit=True) as admin:
                    await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                        "WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()")

            async def restart_postgrest() -> None:
                await asyncio.to_thread(api.stop)
                await asyncio.to_thread(api.start)

            async def restart_postgres() -> None:
                await asyncio.to_thread(pg.restart)

            async def slow_consumer() -> None:
                rng.choice(watched).slow = True

            kinds: dict[str, Callable[[], Awaitable[None]]] = {
                "websocket closed": drop_sockets, "local server restarted": restart_server,
                "LISTEN backend terminated": terminate_listen, "PostgREST restarted": restart_postgrest,
                "Postgres restarted": restart_postgres, "slow consumer": slow_consumer,
            }
            writing_done = asyncio.Event()

            async def fault_loop() -> None:
                # at least three faults, however fast the writers are (some may hit the catch-up after them)
                while not writing_done.is_set() or sum(faults.values()) < 3:
                    await asyncio.sleep(seconds_between_faults)
                    name = rng.choice(list(kinds))
                    with contextlib.suppress(Exception):  # a fault that fails to happen is no failure
                        await kinds[name]()
                        faults[name] += 1

            async def writer(n: int, todo: int) -> None:
                wrng = random.Random(n)
                while todo > 0:
                    try:
                        async with await psycopg.AsyncConnection.connect(pg.dsn, autocommit=True) as db:
                            while todo > 0:
                                async with db.transaction():
                                    for _ in range(min(todo, wrng.randint(1, 3))):
                                        todo -= 1
                                        table = wrng.choice(["trades", "positions", "portfolio_snapshots"])
                                        if table == "trades":
                                            await db.execute("INSERT INTO trades (symbol, side, quantity, price)"
                                                             " VALUES ('S', 'buy', 1, 1)")
                                        elif table == "positions":
                                            await db.execute("INSERT INTO positions (symbol) VALUES ('S')")
                                        else:
                                            await db.execute("INSERT INTO portfolio_snapshots (total_value)"
                                                             " VALUES (1)")
                                await asyncio.sleep(wrng.uniform(0, 0.004))
                    except psycopg.Error:
                        await asyncio.sleep(0.2)  # the server restarted: reconnect; the log says what committed

            started = time.monotonic()
            for w in watched:
                await w.subscriber.start()
            consumers = [asyncio.create_task(consume(w)) for w in watched]
            faulting = asyncio.create_task(fault_loop())
            await asyncio.gather(*(writer(n, changes // 8) for n in range(8)))
            writing_done.set()
            await faulting
            logged = await _log(pg.dsn)
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and any(len(w.got) < len(logged) for w in watched):
                await asyncio.sleep(0.1)
            states = {w.name: w.subscriber.stats.state for w in watched}
            for task in consumers:
                task.cancel()
            for w in watched:
                await w.subscriber.close()
            await servers[-1].stop()
        report = {w.name: {"state at the end": states[w.name], "delivered": len(w.got),
                           "duplicates suppressed": w.subscriber.stats.duplicates,
                           "catch-ups": w.subscriber.stats.catch_ups, "switches": w.subscriber.stats.switches,
                           "by source": dict(w.subscriber.stats.delivered)} for w in watched}
        print(f"soak: {len(logged)} changes in {time.monotonic() - started:.1f} s; faults {dict(faults)}")
        for name, counts in report.items():
            print(f"  {name}: {counts}")
        for w in watched:
            cursors = [str(e.cursor) for e in w.got]
            assert len(set(cursors)) == len(cursors), f"{w.name} delivered a change twice"
            assert cursors == logged, f"{w.name}: {len(cursors)} delivered of {len(logged)} logged"
        assert sum(faults.values()) >= 3
        return {"changes": len(logged), "faults": dict(faults), "subscribers": report}


async def _log(dsn: str) -> list[str]:
    cursors: list[str] = []
    after = START
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        while page := await aread_changes(conn, after, limit=5000, topics=TOPICS):
            cursors += [str(e.cursor) for e in page]
            after = page[-1].position
    return cursors


async def test_soak_short() -> None:
    await soak(2_000)


@pytest.mark.soak
@pytest.mark.timeout(3600)
async def test_soak_full() -> None:
    await soak(20_000)
