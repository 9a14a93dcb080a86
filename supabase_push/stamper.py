"""The stamper: the work that puts the change log in commit order, done after commit.

Writers only append to the change log. ``supabase_push.stamp_v2()`` (in the SQL) gives the
transactions that have committed since its last round consecutive sequence numbers, the
cursor, and pushes them. Someone must call it: every supabase-push process that follows a
database through SQL (subscriber, tail, relay, forward, serve, demo) runs a :class:`Stamper`,
and exactly one of them works at a time, per database. The leader runs
``CALL supabase_push.stamp_loop_v2(...)``, a loop inside the server that holds a session
advisory lock; the others try to take it every ``retry`` seconds, so when the leader dies
another takes over. ``supabase-push stamp`` runs one on its own, and pg_cron can run the loop
with no process at all (docs/supabase.md).

Nothing is lost while nobody stamps: changes wait in the log, and any reader that reads by SQL
stamps first (``changelog.read_changes``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import psycopg

from ._backoff import Backoff
from .db import aconnect, describe_dsn, map_error
from .errors import SupabasePushError

__all__ = ["Backlog", "Stamper", "StamperState", "stamping"]

log = logging.getLogger("supabase_push.stamper")

StamperState = Literal["starting", "leading", "standby", "failing", "stopped"]

_FAST_MS = 1.0
"""The loop's pause between rounds while changes keep coming (``stamp_loop_v2``'s own default too)."""
_IDLE_MS = 10.0
"""The loop's pause once the log is quiet: the most a change after a quiet second waits for a round
(``stamp_loop_v2``'s own default too, what pg_cron runs)."""

_LOOP = "CALL supabase_push.stamp_loop_v2(%s, %s, %s, NULL)"
_LED_AFTER = 0.25
"""Seconds after which a loop that has not returned is taken to be leading."""
_PENDING = """SELECT changes, transactions,
                     CASE WHEN changes > 0 THEN extract(epoch FROM now() - stamped_at)::float8 ELSE 0 END
              FROM supabase_push.pending_v2()"""


@dataclass(frozen=True)
class Backlog:
    """What waits for the stamper: committed changes (and their transactions) with no cursor yet, and
    for how long the log has gone unstamped while they wait (None if it never was)."""

    changes: int
    transactions: int
    seconds: float | None


_NOTHING_WAITS = Backlog(0, 0, 0.0)


@dataclass
class _Settings:
    chunk: float
    fast_ms: float
    idle_ms: float
    retry: float
    max_backoff: float


class Stamper:
    """``async with Stamper(database_url):`` keeps the database's change log stamped while the block
    runs, unless another process already does (then it stands by, ready to take over).

    ``fast_ms`` is the pause between rounds while changes keep coming, ``idle_ms`` the pause it
    slows to after a quiet second (what an idle database costs: one cheap transaction per
    ``idle_ms``; and the most the first change after a quiet second waits for a round). The loop
    runs in the server in chunks of ``chunk`` seconds; a process that dies leaves its chunk running,
    so the work goes on until the next leader takes it. ``failure_level``: how loudly to log that it
    cannot run (a subscriber's reader already reports an unreachable database)."""

    def __init__(self, database_url: str, *, fast_ms: float = _FAST_MS, idle_ms: float = _IDLE_MS, chunk: float = 10.0,
                 retry: float = 1.0, max_backoff: float = 30.0, failure_level: int = logging.WARNING) -> None:
        if fast_ms <= 0 or idle_ms < fast_ms or chunk <= 0 or retry <= 0:
            raise ValueError("need 0 < fast_ms <= idle_ms, chunk > 0 and retry > 0")
        self._dsn = database_url
        self._failure_level = failure_level
        self._settings = _Settings(chunk, fast_ms, idle_ms, retry, max_backoff)
        self._state: StamperState = "starting"
        self.on_state: Callable[[StamperState], None] | None = None
        """Called with every new state (a subscriber mirrors it in its stats)."""
        self.backlog: Backlog | None = None
        """What waits for a cursor, as last seen: nothing after a round this process led; read from the
        database after each try while another process leads or this one cannot run the loop."""
        self.on_backlog: Callable[[Backlog], None] | None = None
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._conn: psycopg.AsyncConnection[Any] | None = None

    @property
    def state(self) -> StamperState:
        return self._state

    @state.setter
    def state(self, value: StamperState) -> None:
        if value != self._state:
            self._state = value
            if self.on_state is not None:
                self.on_state(value)

    def describe(self) -> str:
        return f"stamper for {describe_dsn(self._dsn)}"

    async def run(self) -> None:
        """Lead or stand by, until cancelled. Failures are logged and retried with backoff."""
        backoff = Backoff(self._settings.retry, self._settings.max_backoff)
        failures = 0
        while True:
            try:
                await self._lead_or_wait()
                failures = 0
            except psycopg.errors.UndefinedFunction:
                # Not installed yet, or schema version 1 (which stamps at commit): look again soon.
                if self.state != "failing":
                    log.info("no stamper in %s (supabase-push apply installs or upgrades it); checking every %g s",
                             describe_dsn(self._dsn), self._settings.retry)
                self.state, self.last_error = "failing", "supabase_push.stamp_loop_v2() is not installed"
                await asyncio.sleep(self._settings.retry)
            except (psycopg.Error, SupabasePushError) as exc:
                error = map_error(exc, self._dsn) if isinstance(exc, psycopg.Error) else exc
                message = error.message if isinstance(error, SupabasePushError) else str(error)
                if self.state != "failing" or message != self.last_error:
                    log.log(self._failure_level, "the stamper cannot run (%s); changes wait in the log, retrying",
                            message)
                self.state, self.last_error = "failing", message
                if isinstance(exc, psycopg.errors.InsufficientPrivilege):  # the connection is fine: say what waits
                    await self._read_backlog()
                await self._disconnect()
                failures += 1
                await asyncio.sleep(backoff.delay(failures))

    async def _lead_or_wait(self) -> None:
        if self._conn is None or self._conn.closed:
            self._conn = await aconnect(self._dsn)
        s = self._settings
        call = asyncio.ensure_future(self._conn.execute(_LOOP, (s.chunk, s.fast_ms, s.idle_ms)))
        try:
            done, _ = await asyncio.wait([call], timeout=_LED_AFTER)
            if not done:  # the loop returns at once when another holds the database: this one leads
                self.state, self.last_error = "leading", None
                self._set_backlog(_NOTHING_WAITS)
            cur = await call
        except asyncio.CancelledError:
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError, psycopg.Error):
                await call
            raise
        row = await cur.fetchone()
        led = bool(row and row[0])
        if led and self.state != "leading":
            log.info("stamping the change log of %s", describe_dsn(self._dsn))
        elif self.state != "standby":
            log.debug("another process stamps %s; standing by", describe_dsn(self._dsn))
        self.state, self.last_error = ("leading" if led else "standby"), None
        if not led:
            await self._read_backlog()
            await asyncio.sleep(s.retry * (0.5 + random.random()))  # noqa: S311 - jitter

    async def _read_backlog(self) -> None:
        if self._conn is None or self._conn.closed:
            return
        try:
            row = await (await self._conn.execute(_PENDING)).fetchone()
        except psycopg.Error as exc:  # an older schema, or no right to it: the state says enough
            log.debug("cannot read the stamper's backlog: %s", exc)
            return
        if row is not None:
            self._set_backlog(Backlog(int(row[0]), int(row[1]), None if row[2] is None else float(row[2])))

    def _set_backlog(self, backlog: Backlog) -> None:
        if backlog != self.backlog:
            self.backlog = backlog
            if self.on_backlog is not None:
                self.on_backlog(backlog)

    async def start(self) -> Stamper:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="supabase-push-stamper")
        return self

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._disconnect()
        self.state = "stopped"

    async def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None or conn.closed:
            return
        # A backend left in the loop would go on leading until its chunk ends; cancel it first.
        try:
            with contextlib.suppress(psycopg.Error, OSError):
                await conn.cancel_safe(timeout=2.0)
        finally:  # a close() of ours cancelled while it waits still closes the connection
            with contextlib.suppress(psycopg.Error, OSError):
                await conn.close()

    async def __aenter__(self) -> Stamper:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()


@contextlib.contextmanager
def stamping(database_url: str, *, fast_ms: float = _FAST_MS, idle_ms: float = _IDLE_MS,
             retry: float = 1.0) -> Iterator[None]:
    """``with stamping(dsn):`` runs the stamping loop on a thread of its own while the block runs: for
    synchronous scripts, tests and benchmarks that write with no supabase-push process around. It
    leads when nobody else does (and looks again every ``retry`` seconds while another process leads);
    an error (not installed yet, or any more) is retried. On leaving the block its loop is cancelled
    (a round cut short stamps nothing; the next one does)."""
    stop = threading.Event()
    connections: list[psycopg.Connection[Any]] = []

    def loop() -> None:
        while not stop.is_set():
            try:
                with psycopg.connect(database_url, autocommit=True, application_name="supabase-push") as conn:
                    connections[:] = [conn]
                    while not stop.is_set():
                        row = conn.execute(_LOOP, (_HELPER_CHUNK, fast_ms, idle_ms)).fetchone()
                        if not (row and row[0]):  # the loop returned at once: another process leads
                            stop.wait(retry)
            except psycopg.Error:
                stop.wait(0.05)

    thread = threading.Thread(target=loop, name="supabase-push-stamping", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        for _ in range(100):  # a cancel that lands between two calls is lost: send it until the thread ends
            for conn in connections:
                with contextlib.suppress(psycopg.Error):
                    conn.cancel_safe(timeout=1)
            thread.join(0.1)
            if not thread.is_alive():
                break


_HELPER_CHUNK = 60.0
"""Seconds of each loop :func:`stamping` calls: long enough to reach the idle pace (after a quiet second)."""
