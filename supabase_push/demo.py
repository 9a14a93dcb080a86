"""``supabase-push demo``: the whole path on a throwaway Postgres, with nothing configured.

Starts a local cluster, applies the triggers with the reference trading tables, verifies
them, runs concurrent trading writers while a LISTEN connection receives the pushes, then
reads the change log back by cursor and checks that nothing was lost or reordered.
"""

from __future__ import annotations

import itertools
import random
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from . import schema
from .changelog import read_changes
from .db import connect
from .embedded import LocalPostgres
from .events import DEFAULT_ROUTES, START, ChangeEvent, Cursor

__all__ = ["run_demo"]

SYMBOLS = ("SPY251219C00600000", "AAPL", "NVDA", "TSLA", "QQQ251219P00480000")
WRITERS = 4


def run_demo(*, changes: int = 200, say: Callable[[str], None] = print) -> dict[str, Any]:
    started = time.perf_counter()
    with LocalPostgres() as pg:
        say(f"[green]✓[/green] throwaway Postgres {pg.version} on 127.0.0.1 "
            f"(binaries: {pg.bin_dir})")
        with connect(pg.dsn) as conn:
            result = schema.apply(conn, create_tables=True)
            say(f"[green]✓[/green] applied triggers, schema v{result.schema_version}: "
                + ", ".join(f"{r['table_name']} -> {r['topic']}" for r in result.routes))
            report = schema.verify(conn)
            say(f"[{'green' if report.ok else 'red'}]{'✓' if report.ok else '✗'}[/] verify: "
                f"{len(report.checks)} checks, {len(report.problems)} problem(s)")
            _seed_positions(conn)

        listener = _Listener(pg.dsn, list(DEFAULT_ROUTES.values()))
        listener.start()
        written = _write_trading_changes(pg.dsn, changes)
        say(f"[green]✓[/green] {WRITERS} concurrent writers committed {sum(written.values())} "
            f"changes: " + ", ".join(f"{n} {table}" for table, n in sorted(written.items())))
        received = listener.wait_for(sum(written.values()), timeout=15)

        with connect(pg.dsn) as conn:
            by_cursor = _read_all(conn)
        summary = _summarise(written, received, by_cursor, report.ok)
        summary["postgres"] = pg.version
        summary["seconds"] = round(time.perf_counter() - started, 2)
        latency = summary["listen_latency_ms"]
        say(f"[green]✓[/green] LISTEN received {summary['received_listen']} pushes, "
            f"commit-to-receive p50 {latency['p50']} ms, p99 {latency['p99']} ms")
        say(f"[{'green' if summary['ok'] else 'red'}]{'✓' if summary['ok'] else '✗'}[/] "
            f"change log read by cursor: {summary['read_by_cursor']} changes, "
            f"lost {summary['lost']}, duplicates {summary['duplicates']}, "
            f"out of order {summary['out_of_order']}")
    say(f"[green]✓[/green] stopped and removed the throwaway Postgres "
        f"({summary['seconds']} s in all)")
    return summary


def _seed_positions(conn: psycopg.Connection[Any]) -> None:
    with conn.transaction():
        for symbol in SYMBOLS:
            conn.execute(
                "INSERT INTO positions (symbol, quantity, average_price, current_price) "
                "VALUES (%s, 0, 0, 100)", (symbol,))


def _write_trading_changes(dsn: str, changes: int) -> Counter[str]:
    """Trades fill into positions, now and then a portfolio snapshot; one txn per order."""
    written: Counter[str] = Counter()
    lock = threading.Lock()
    per_writer = max(1, changes // WRITERS)

    def writer(seed: int) -> None:
        rng = random.Random(seed)  # noqa: S311 - simulated prices, not secrets
        done: Counter[str] = Counter()
        with connect(dsn) as conn:
            while sum(done.values()) < per_writer:
                symbol = rng.choice(SYMBOLS)
                qty, price = rng.randint(1, 20), round(rng.uniform(90, 110), 2)
                with conn.transaction():
                    conn.execute(
                        "INSERT INTO trades (symbol, side, quantity, price) VALUES (%s, %s, %s, %s)",
                        (symbol, rng.choice(("buy", "sell")), qty, price))
                    conn.execute(
                        "UPDATE positions SET quantity = quantity + %s, current_price = %s, "
                        "unrealized_pnl = (%s - average_price) * (quantity + %s), updated_at = now() "
                        "WHERE symbol = %s", (qty, price, price, qty, symbol))
                    done.update(("trades", "positions"))
                    if rng.random() < 0.1:
                        conn.execute(
                            "INSERT INTO portfolio_snapshots (total_value, cash, positions_value) "
                            "SELECT sum(quantity * current_price) + 100000, 100000, "
                            "sum(quantity * current_price) FROM positions")
                        done["portfolio_snapshots"] += 1
        with lock:
            written.update(done)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return written


class _Listener(threading.Thread):
    """LISTENs on the topics and keeps (event, received_at) pairs."""

    def __init__(self, dsn: str, channels: list[str]) -> None:
        super().__init__(daemon=True)
        self.conn = connect(dsn)
        for channel in channels:
            self.conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        self.received: list[tuple[ChangeEvent, datetime]] = []
        self._done = threading.Event()

    def run(self) -> None:
        with self.conn:
            while not self._done.is_set():
                for note in self.conn.notifies(timeout=0.2):
                    event = ChangeEvent.model_validate_json(note.payload).model_copy(
                        update={"source": "listen"})
                    self.received.append((event, datetime.now(UTC)))

    def wait_for(self, count: int, timeout: float) -> list[tuple[ChangeEvent, datetime]]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        self._done.set()
        self.join()
        return self.received


def _read_all(conn: psycopg.Connection[Any]) -> list[ChangeEvent]:
    events: list[ChangeEvent] = []
    cursor = START
    while page := read_changes(conn, cursor, limit=100):
        events += page
        cursor = page[-1].position
    return events


def _summarise(
    written: Counter[str],
    received: list[tuple[ChangeEvent, datetime]],
    by_cursor: list[ChangeEvent],
    verified: bool,
) -> dict[str, Any]:
    # The seeding transaction's changes are in the log too; count only what the writers made.
    logged = Counter(event.table for event in by_cursor)
    expected = sum(written.values())
    seen = {event.id for event in by_cursor}
    positions = [Cursor.parse(event.cursor) for event in by_cursor]
    out_of_order = sum(1 for a, b in itertools.pairwise(positions) if b <= a)
    listen_ids = [event.id for event, _ in received]
    latencies = sorted(
        (at - event.commit_ts).total_seconds() * 1000 for event, at in received)
    seed = len(SYMBOLS)
    lost = max(0, expected + seed - len(seen))
    return {
        "ok": verified and lost == 0 and out_of_order == 0 and len(listen_ids) == len(set(listen_ids))
        and len(received) >= expected,
        "changes_written": expected,
        "by_table": {table: logged.get(table, 0) for table in ("positions", "trades",
                                                               "portfolio_snapshots")},
        "received_listen": len(received),
        "read_by_cursor": len(by_cursor),
        "lost": lost,
        "duplicates": len(by_cursor) - len(seen),
        "out_of_order": out_of_order,
        "listen_latency_ms": {
            "p50": round(statistics.median(latencies), 2) if latencies else None,
            "p99": round(latencies[int(len(latencies) * 0.99) - 1], 2) if latencies else None,
        },
    }
