"""Helpers for the subscriber tests: 8 concurrent writers, the change log as the truth, faults midway.

The events a subscriber hands out must equal the change log read from the start: every
change exactly once, in cursor order.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg

from supabase_push.changelog import read_changes
from supabase_push.config import Settings
from supabase_push.events import START, ChangeEvent, Cursor
from supabase_push.subscribe import Subscriber

TOPICS = ["position-updates", "trade-updates", "portfolio-updates"]
WRITERS, CHANGES = 8, 2000


async def write(url: str, writers: int = WRITERS, changes: int = CHANGES, pause: float = 0.002) -> None:
    """``changes`` changes in transactions of 1-3 changes, from ``writers`` connections at once."""

    async def writer(n: int) -> None:
        rng = random.Random(n)
        left = changes // writers
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as db:
            while left > 0:
                async with db.transaction():
                    for _ in range(min(left, rng.randint(1, 3))):
                        table = rng.choice(["trades", "positions", "portfolio_snapshots"])
                        if table == "trades":
                            await db.execute("INSERT INTO trades (symbol, side, quantity, price) "
                                             "VALUES (%s, 'buy', 1, 1)", (f"W{n}",))
                        elif table == "positions":
                            await db.execute("INSERT INTO positions (symbol, quantity) VALUES (%s, 1)", (f"W{n}",))
                        else:
                            await db.execute("INSERT INTO portfolio_snapshots (total_value) VALUES (%s)", (n,))
                        left -= 1
                await asyncio.sleep(rng.uniform(0, pause))

    await asyncio.gather(*(writer(n) for n in range(writers)))


def logged(url: str, topics: list[str] = TOPICS) -> list[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        return [str(e.cursor) for e in read_changes(conn, START, limit=1_000_000, topics=topics)]


async def collect(subscriber: Subscriber, count: int, timeout: float = 60) -> list[ChangeEvent]:
    got: list[ChangeEvent] = []

    async def drain() -> None:
        async for event in subscriber:
            got.append(event)
            if len(got) >= count:
                return

    try:
        await asyncio.wait_for(drain(), timeout)
    except TimeoutError:
        raise AssertionError(f"got {len(got)} of {count} events; stats {subscriber.stats}") from None
    return got


async def run_with_fault(subscriber: Subscriber, url: str, fault: Callable[[], Awaitable[None]],
                         fault_after: float = 0.4, settle_in: str | None = None) -> tuple[list[ChangeEvent], str]:
    """Collect while 8 writers write and ``fault`` strikes; with ``settle_in``, then wait for that state."""
    history = logged(url)
    baseline = len(history)

    async def fault_midway() -> None:
        await asyncio.sleep(fault_after)
        await fault()

    async with subscriber:
        await asyncio.wait_for(subscriber.wait_ready(), 20)
        collecting = asyncio.create_task(collect(subscriber, baseline + CHANGES))
        # The writes start once the history of the (shared) database is read: else a catch-up still
        # reading it would take the new changes too, and no push would be left to deliver one.
        deadline = asyncio.get_running_loop().time() + 30
        while history and subscriber.cursor < Cursor.parse(history[-1]):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"the history was not read in 30 s: {subscriber.stats}")
            await asyncio.sleep(0.01)
        await asyncio.gather(write(url), fault_midway())
        got = await collecting
        if settle_in:
            await until(subscriber, settle_in)
        await asyncio.sleep(0.2)  # nothing more may come
        assert subscriber._out.empty()
        state = subscriber.stats.state
    return got, state


async def until(subscriber: Subscriber, state: str, timeout: float = 15) -> None:
    """Wait for the subscriber to reach ``state`` (a transport coming back takes a backoff or two)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while subscriber.stats.state != state:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"still {subscriber.stats.state!r} after {timeout} s, not {state!r}")
        await asyncio.sleep(0.05)


async def no_fault() -> None:
    pass


def assert_exactly_once_in_order(got: list[ChangeEvent], url: str) -> None:
    cursors = [str(e.cursor) for e in got]
    assert len(set(cursors)) == len(cursors), "a change was delivered twice"
    assert cursors == logged(url), "the delivered stream differs from the change log"


def settings(**values: Any) -> Settings:
    return Settings(**values)


async def terminate(url: str, where: str) -> int:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
        cur = await admin.execute(
            f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE {where} AND pid <> pg_backend_pid()")
        row = await cur.fetchone()
        return int(row[0]) if row else 0


