"""Getting alerts to a sink: a priority queue, a rate limit, retries with backoff, and a
dead-letter file for what still fails, so an outage of the sink loses nothing."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .._backoff import Backoff
from ..errors import ConfigError
from ..events import ChangeEvent
from .rules import Alert, Priority
from .targets import Sink, SinkError

__all__ = ["DeadLetters", "RateLimit", "SinkWorker"]

log = logging.getLogger("supabase_push.sinks")

_PER = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0, "h": 3600.0, "hour": 3600.0}


class RateLimit:
    """A token bucket: ``count`` sends per ``period`` seconds, in bursts of up to ``count``."""

    def __init__(self, count: int, period: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if count < 1 or period <= 0:
            raise ConfigError(f"a rate must allow at least one send per period, not {count}/{period}s")
        self.count, self.period, self._clock = count, period, clock
        self._tokens = float(count)
        self._at = clock()

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """``"20/min"``, ``"5/s"``, ``"100/hour"``."""
        match = re.fullmatch(r"\s*(\d+)\s*/\s*([a-z]+)\s*", text)
        if not match or match[2] not in _PER:
            raise ConfigError(f"not a rate: {text!r}", hint="write it as count/period: 20/min, 5/s, 100/hour")
        return cls(int(match[1]), _PER[match[2]])

    def __str__(self) -> str:
        return f"{self.count} per {self.period:g} s"

    def wait_time(self) -> float:
        """Seconds until a send is allowed (0: now)."""
        self._refill()
        return 0.0 if self._tokens >= 1 else (1 - self._tokens) * self.period / self.count

    def take(self) -> None:
        self._refill()
        self._tokens -= 1

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(float(self.count), self._tokens + (now - self._at) * self.count / self.period)
        self._at = now


class DeadLetters:
    """Alerts no sink took, one JSON line each: the alert, the sink, the last error and the attempts."""

    def __init__(self, path: str | os.PathLike[str], *, unreadable: Path | None = None) -> None:
        self.path = Path(path)
        self.unreadable = unreadable or self.path.with_name(self.path.name + ".unreadable")
        """Where lines that are not dead letters go (see :meth:`__iter__`)."""

    def add(self, sink: str, alert: Alert, error: str, attempts: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a", encoding="utf-8") as f:
            f.write(_entry(sink, alert, error, attempts))
            f.flush()
            os.fsync(f.fileno())

    def __iter__(self) -> Iterator[tuple[str, Alert]]:
        """Every letter that can be read; a line that cannot (cut short, edited by hand) is moved to
        :attr:`unreadable` with a warning, so one bad line neither stops a replay nor is lost."""
        if not self.path.exists():
            return
        for number, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                letter = entry["sink"], _alert_from(entry["alert"])
            except (ValueError, KeyError, TypeError) as exc:
                with open(os.open(self.unreadable, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a",
                          encoding="utf-8") as f:
                    f.write(line + "\n")
                log.warning("%s line %d is not a dead letter (%s): kept in %s", self.path, number,
                            type(exc).__name__, self.unreadable)
                continue
            yield letter


def _entry(sink: str, alert: Alert, error: str, attempts: int) -> str:
    return json.dumps({"sink": sink, "at": datetime.now(UTC).isoformat(), "attempts": attempts, "error": error,
                       "alert": alert.as_dict()}) + "\n"


def _alert_from(data: dict[str, Any]) -> Alert:
    return Alert(rule=data["rule"], priority=Priority.parse(data["priority"]), message=data["message"],
                 event=ChangeEvent.model_validate(data["event"]), sinks=())


@dataclass(order=True)
class _Queued:
    rank: tuple[int, int]
    alert: Alert = field(compare=False)
    done: asyncio.Future[str] = field(compare=False)


@dataclass
class SinkStats:
    sent: int = 0
    retries: int = 0
    dead_lettered: int = 0
    queued: int = 0
    last_error: str | None = None


class SinkWorker:
    """One sink's queue, highest priority first (then oldest first), sent one at a time.

    ``submit`` returns a future that resolves to "sent" or "dead-lettered": either way the
    alert is settled, and the forwarder may move its cursor past the change.
    """

    def __init__(self, sink: Sink, dead_letters: DeadLetters, *, rate: RateLimit | None = None,
                 min_priority: Priority = Priority.LOW, attempts: int = 5, backoff: float = 0.5,
                 max_backoff: float = 30.0) -> None:
        self.sink = sink
        self.dead_letters = dead_letters
        self.rate = rate
        self.min_priority = min_priority
        self.attempts = attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.stats = SinkStats()
        self._heap: list[_Queued] = []
        self._order = itertools.count()
        self._wake = asyncio.Event()
        self._current: _Queued | None = None

    def accepts(self, alert: Alert) -> bool:
        return alert.priority >= self.min_priority and (not alert.sinks or self.sink.name in alert.sinks)

    def submit(self, alert: Alert) -> asyncio.Future[str]:
        done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, _Queued((-alert.priority, next(self._order)), alert, done))
        self.stats.queued = len(self._heap)
        self._wake.set()
        return done

    async def run(self) -> None:
        while True:
            while not self._heap:
                self._wake.clear()
                await self._wake.wait()
            if self.rate is not None:
                while (wait := self.rate.wait_time()) > 0:
                    await asyncio.sleep(wait)
            item = self._current = heapq.heappop(self._heap)  # after the wait: a more urgent one may have come
            self.stats.queued = len(self._heap)
            if self.rate is not None:
                self.rate.take()
            outcome = await self._deliver(item.alert)
            self._current = None
            if not item.done.done():
                item.done.set_result(outcome)

    async def _deliver(self, alert: Alert) -> str:
        error = "not tried"
        for attempt in range(1, self.attempts + 1):
            try:
                await self.sink.send(alert)
            except SinkError as exc:
                failure = exc
            except Exception as exc:  # a bug, or input the sink refuses outright: never kill the worker
                log.exception("%s could not send alert %r", self.sink.describe(), alert.rule)
                failure = SinkError(f"{type(exc).__name__}: {exc}", permanent=True)
            else:
                self.stats.sent += 1
                log.info("%s: sent %s alert %r (%s)", self.sink.describe(), alert.priority, alert.rule, alert.key)
                return "sent"
            error = self.stats.last_error = failure.message
            if failure.permanent or attempt == self.attempts:
                return self._dead(alert, error, attempt)
            self.stats.retries += 1
            delay = (min(failure.retry_after, self.max_backoff) if failure.retry_after is not None  # Retry-After:
                     else self._delay(attempt))                                                       # 100000 is a day
            log.warning("%s: %s (attempt %d of %d; again in %.1f s)", self.sink.describe(), error, attempt,
                        self.attempts, delay)
            await asyncio.sleep(delay)
        return self._dead(alert, error, self.attempts)

    def _delay(self, attempt: int) -> float:
        return Backoff(self.backoff, self.max_backoff).delay(attempt)

    def _dead(self, alert: Alert, error: str, attempts: int) -> str:
        self.dead_letters.add(self.sink.name, alert, error, attempts)
        self.stats.dead_lettered += 1
        log.error("%s: gave up on %s alert %r after %d attempt(s): %s; written to %s", self.sink.describe(),
                  alert.priority, alert.rule, attempts, error, self.dead_letters.path)
        return "dead-lettered"

    def abandon(self, reason: str) -> None:
        """On shutdown (after the worker task is cancelled): the alert being sent and whatever is still
        queued go to the dead-letter file, so they are settled, not lost."""
        pending = [self._current] if self._current is not None else []
        self._current = None
        while self._heap:
            pending.append(heapq.heappop(self._heap))
        for item in pending:
            if not item.done.done():
                item.done.set_result(self._dead(item.alert, reason, 0))
        self.stats.queued = 0
