"""What the demo's subscribers saw: per transport, and the trading book rebuilt from the stream."""

from __future__ import annotations

import bisect
import statistics
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..events import ChangeEvent, Cursor
from ..subscribe import Subscriber

__all__ = ["Book", "Tally", "Watch"]


@dataclass
class Tally:
    """Every change any of the watches delivered, in cursor order: the live reference for "lost"
    (the change log is the one the final summary checks against)."""

    keys: list[Cursor] = field(default_factory=list)
    _seen: set[Cursor] = field(default_factory=set)

    def add(self, key: Cursor) -> None:
        if key not in self._seen:
            self._seen.add(key)
            bisect.insort(self.keys, key)

    def up_to(self, key: Cursor) -> int:
        return bisect.bisect_right(self.keys, key)


@dataclass
class Watch:
    """One subscriber and what it delivered: cursors (to check against the log) and latency."""

    name: str
    subscriber: Subscriber
    tally: Tally = field(default_factory=Tally)
    cursors: list[Cursor] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    _distinct: set[Cursor] = field(default_factory=set)
    _arrivals: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))

    def __call__(self, event: ChangeEvent) -> None:
        now = time.time()
        self._distinct.add(event.cursor)
        self.tally.add(event.cursor)
        self.cursors.append(event.cursor)
        self.latencies_ms.append(max(0.0, (now - event.commit_ts.timestamp()) * 1000))
        self._arrivals.append(time.monotonic())

    def per_second(self, window: float = 3.0) -> float:
        since = time.monotonic() - window
        return sum(1 for t in self._arrivals if t >= since) / window

    @property
    def duplicates(self) -> int:
        return len(self.cursors) - len(self._distinct)

    @property
    def lost(self) -> int:
        """Changes another watch delivered, older than this one's latest, that this one has not."""
        if not self.cursors:
            return 0
        return self.tally.up_to(self.cursors[-1]) - len(self._distinct)

    def percentile(self, q: float, recent: int | None = None) -> float | None:
        values = sorted(self.latencies_ms[-recent:] if recent else self.latencies_ms)
        if not values:
            return None
        return values[min(len(values) - 1, int(q * len(values)))]

    def summary(self, logged: list[Cursor]) -> dict[str, Any]:
        seen = set(self.cursors)
        stats = self.subscriber.stats
        return {
            "delivered": len(self.cursors),
            "lost": len(set(logged) - seen),
            "duplicates": len(self.cursors) - len(seen),
            "in_order": self.cursors == sorted(self.cursors),
            "latency_ms": {"p50": _round(statistics.median(self.latencies_ms) if self.latencies_ms else None),
                           "p99": _round(self.percentile(0.99))},
            "by_source": dict(stats.delivered),
            "switches": stats.switches,
            "push_failures": stats.push_failures,
        }


@dataclass
class Book:
    """Positions, recent trades and the portfolio value, kept from the change stream alone."""

    positions: dict[int, dict[str, Any]] = field(default_factory=dict)
    trades: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=8))
    portfolio: dict[str, Any] | None = None

    def __call__(self, event: ChangeEvent) -> None:
        row = event.record
        if event.op == "TRUNCATE":
            if event.table == "positions":
                self.positions.clear()
            elif event.table == "trades":
                self.trades.clear()
            elif event.table == "portfolio_snapshots":
                self.portfolio = None
            return
        if row is None or event.op == "GAP":
            if event.op == "DELETE" and event.old_record and event.table == "positions":
                self.positions.pop(int(event.old_record["id"]), None)
            return
        if event.table == "positions":
            self.positions[int(row["id"])] = row
        elif event.table == "trades" and event.op == "INSERT":
            self.trades.appendleft(row)
        elif event.table == "portfolio_snapshots":
            self.portfolio = row


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
