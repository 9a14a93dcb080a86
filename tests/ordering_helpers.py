"""Writers, stampers and log checks shared by the ordering tests (schema v2's stamper)."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from supabase_push.changelog import read_changes
from supabase_push.events import START, ChangeEvent, Cursor

SHIPPED_INSTALLS = {version: Path(__file__).parent / "data" / f"realtime_triggers_v{version}.sql"
                    for version in range(1, 9)}
"""sql/realtime_triggers.sql as each schema version shipped it, by version: what users' databases hold (1: the
first release, stamped at commit; 2: the stamper, before events; 3: events and snapshots ...)."""


def whole_log(url: str, after: Cursor = START, *, page_size: int = 5000) -> list[ChangeEvent]:
    """Every change after ``after``, read page by page as a subscriber resuming there would."""
    events: list[ChangeEvent] = []
    with psycopg.connect(url, autocommit=True) as conn:
        while page := read_changes(conn, after, limit=page_size):
            events += page
            after = page[-1].position
    return events


@dataclass
class Writers:
    """``n`` threads of short transactions on a few hot rows (each UPDATE bumps ``quantity``, so per-row
    order shows in the values), plus inserts and rollbacks, until :meth:`stop`."""

    url: str
    n: int = 8
    hot_rows: int = 4
    committed: int = 0
    rolled_back: int = 0
    setup_transactions: int = 0
    """1 if entering inserted the hot rows (a transaction of its own), else 0."""
    errors: list[BaseException] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> Writers:
        with psycopg.connect(self.url, autocommit=True) as conn:
            cur = conn.execute("INSERT INTO positions (symbol, quantity) SELECT 'HOT' || i, 0 "
                               "FROM generate_series(0, %s - 1) i WHERE NOT EXISTS "
                               "(SELECT FROM positions WHERE symbol = 'HOT0')", (self.hot_rows,))
            self.setup_transactions = 1 if cur.rowcount else 0
        for n in range(self.n):
            thread = threading.Thread(target=self._write, args=(n,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _write(self, n: int) -> None:
        rng = random.Random(n)
        try:
            with psycopg.connect(self.url, autocommit=True) as conn:
                while not self._stop.is_set():
                    rollback = rng.random() < 0.1
                    # hot rows in one order (no deadlocks: each would cost deadlock_timeout)
                    ops = sorted(rng.randrange(-1, self.hot_rows) for _ in range(rng.randint(1, 3)))
                    with conn.transaction(force_rollback=rollback):
                        for op in ops:
                            if op >= 0:
                                conn.execute("UPDATE positions SET quantity = quantity + 1 WHERE symbol = %s",
                                             (f"HOT{op}",))
                            else:
                                conn.execute("INSERT INTO trades (symbol, side, quantity, price) "
                                             "VALUES ('W', 'buy', %s, 1)", (n + 1,))
                    with self._lock:
                        if rollback:
                            self.rolled_back += 1
                        else:
                            self.committed += 1
        except BaseException as exc:  # reported by stop()
            self.errors.append(exc)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)
        assert not self.errors, self.errors

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def assert_ordered(events: list[ChangeEvent]) -> None:
    """Cursor order is strict, and every hot row's quantity goes up by one from change to change."""
    positions = [e.position for e in events]
    assert positions == sorted(positions) and len(set(positions)) == len(positions), "cursors out of order or doubled"
    last: dict[str, int] = {}
    for event in events:
        if event.table != "positions" or event.op != "UPDATE":
            continue
        assert event.record is not None and event.old_record is not None
        symbol, before, after = event.record["symbol"], event.old_record["quantity"], event.record["quantity"]
        assert after == before + 1, f"{symbol}: {before} -> {after}"
        assert symbol not in last or last[symbol] == before, \
            f"{symbol}: {last.get(symbol)} then {before} -> {after}: per-row order broken at {event.cursor}"
        last[symbol] = after


def transaction_seqs(events: list[ChangeEvent]) -> list[int]:
    return sorted({e.position.seq for e in events if e.op != "GAP"})
