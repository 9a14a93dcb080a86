"""The Subscriber: the best configured transport, polling while it is down, nothing lost.

One engine task owns the cursor. Pushes, transport state changes and timer ticks reach it
through one queue, so a push never races a read: the engine delivers a push that
continues the stream, reads the log by cursor for anything else, and polls while no push
transport is up. A supervisor task keeps the push transport running, forever, with
jittered backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, cast

from .._backoff import Backoff
from ..changelog import SnapshotStart
from ..config import Settings
from ..errors import AccessRefusedError, ConfigError, SupabasePushError, TransportError
from ..events import DEFAULT_ROUTES, START, ChangeEvent, Cursor, Source
from ..stamper import Backlog, Stamper
from .cursor_store import CursorStore, FileCursorStore
from .readers import Reader, RestReader, SqlReader, read_pages, reader_for
from .row_filter import RowFilter
from .sequencer import Sequencer, Verdict
from .transports import Hint, PushTransport, TokenSource, transport_from_settings

__all__ = ["Subscriber", "SubscriberStats"]

STOP_GRACE = 5.0
"""Seconds :meth:`Subscriber.close` waits for its tasks to end once cancelled."""
_AWAITED_READS = 10  # reads that look for a pushed change not visible yet (about a minute in all), then verify's

log = logging.getLogger("supabase_push.subscribe")

Callback = Callable[[ChangeEvent], Any]

@dataclass
class SubscriberStats:
    state: str = "starting"
    """``push:<transport>``, ``poll:<reader>`` (push down or not configured), ``stopped``."""
    delivered: Counter[str] = field(default_factory=Counter)
    """Events handed to you, by source: realtime, listen, poll, catch-up."""
    duplicates: int = 0
    """Pushes and reads of changes already delivered, dropped."""
    catch_ups: int = 0
    """Reads by cursor that found something the pushes had not brought."""
    gaps: int = 0
    """Gap events: changes pruned from the log before this subscriber read them."""
    switches: int = 0
    read_failures: int = 0
    push_failures: int = 0
    callback_errors: int = 0
    filtered: int = 0
    lag_ms: float | None = None
    """Commit to delivery, of the last event delivered."""
    connected: bool = False
    """A read of the change log has succeeded, or the push transport has come up, at least once."""
    last_error: str | None = None
    """Why the last read or push connection failed (None once reading works again)."""
    refused: bool = False
    """Since the last good read, a read or the push transport was refused: wrong credentials, or a role
    without the right (:class:`AccessRefusedError`); ``last_error`` is then that refusal."""
    stamper: str | None = None
    """This process's stamper (:class:`~supabase_push.stamper.Stamper`): ``leading`` (it orders the log),
    ``standby`` (another process does), ``failing``; None without one (a PostgREST-only subscriber)."""
    waiting_changes: int | None = None
    """Committed changes that have no cursor yet (they wait for a stamper), as this process's stamper
    last saw: 0 while it leads; read from the database while it stands by or cannot run the loop."""
    waiting_seconds: float | None = None
    """How long the log has gone unstamped while ``waiting_changes`` wait (0 when none wait)."""
    snapshot_rows: int = 0
    """Rows the snapshot gave (``start="snapshot"``), filtered ones included."""
    snapshot_skipped: int = 0
    """Changes read after the snapshot that its rows already held (not delivered)."""
    _delivered: Callable[[], Cursor] = field(default=lambda: START, repr=False, compare=False)

    @property
    def cursor(self) -> Cursor:
        """The last change accounted for (delivered or filtered out): the subscriber's own, read when asked."""
        return self._delivered()

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state, "delivered": dict(self.delivered), "duplicates": self.duplicates,
                "catch_ups": self.catch_ups, "gaps": self.gaps, "switches": self.switches,
                "read_failures": self.read_failures, "push_failures": self.push_failures,
                "callback_errors": self.callback_errors, "filtered": self.filtered,
                "lag_ms": None if self.lag_ms is None else round(self.lag_ms, 3), "cursor": str(self.cursor),
                "connected": self.connected, "last_error": self.last_error, "refused": self.refused,
                "stamper": self.stamper, "waiting_changes": self.waiting_changes,
                "waiting_seconds": None if self.waiting_seconds is None else round(self.waiting_seconds, 3),
                "snapshot_rows": self.snapshot_rows, "snapshot_skipped": self.snapshot_skipped}


@dataclass
class _Push:
    event: ChangeEvent | Hint | None


@dataclass
class _Up:
    transport: str


@dataclass
class _Down:
    reason: str
    refused: bool = False


_END = object()


class Subscriber:
    """``async with Subscriber.from_env(topics=[...]) as sub: async for event in sub: ...``

    Every change on ``topics`` is delivered once, in cursor order, whatever the transport
    does: pushes are checked for continuity, anything missed is read from the change log.

    ``start`` is a cursor (``"seq:id"``; default the beginning), ``"now"``: the newest change
    when :meth:`start` runs, or ``"snapshot"``: first the current rows of the topics' tables, read in
    one snapshot (``op == "SNAPSHOT"`` events, filters applied), then every change after exactly those
    rows (see docs/subscriber.md). With ``cursor_store`` (a path, or your own :class:`CursorStore`), the
    cursor of the last event you finished with is saved, and the next run starts after it. An event counts as
    finished when your loop asks for the next one, when the ``async with`` block exits
    without an exception, or, for ``on()`` callbacks, when they have returned; with ``auto_ack=False``,
    only when you say so with :meth:`ack`.

    A failed read is retried with backoff, for ever. With ``stop_on_refusal``, a reader that is
    refused (a wrong password or key, a role without the right to read) ends the iteration with
    :class:`AccessRefusedError` instead: what a command line wants, where nobody will fix the key.

    ``stamper`` runs while the subscriber does (see :mod:`supabase_push.stamper`): the work that puts
    new changes in commit order, which some process (or pg_cron) must do for pushes to flow.
    """

    def __init__(self, *, reader: Reader, push: PushTransport | None = None, topics: Sequence[str] | None = None,
                 start: Cursor | str | None = None, cursor_store: CursorStore | str | os.PathLike[str] | None = None,
                 filters: Sequence[str] = (), poll_interval: float = 1.0, verify_interval: float = 10.0,
                 page_size: int = 500, queue_size: int = 1000, max_backoff: float = 30.0,
                 stop_on_refusal: bool = False, stamper: Stamper | None = None, auto_ack: bool = True) -> None:
        self.topics = list(topics) if topics is not None else list(DEFAULT_ROUTES.values())
        if not self.topics:
            raise ConfigError("no topics to subscribe to")
        self.push = push
        self.reader = reader
        self.stamper = stamper
        self.filters = [RowFilter.parse(f) for f in filters]
        self.poll_interval = poll_interval
        self.verify_interval = verify_interval
        self.page_size = page_size
        self.max_backoff = max_backoff
        self.stop_on_refusal = stop_on_refusal
        self.auto_ack = auto_ack
        self.cursor_store: CursorStore | None = (
            FileCursorStore(cursor_store) if isinstance(cursor_store, (str, os.PathLike)) else cursor_store)
        self.stats = SubscriberStats()
        if stamper is not None:
            stamper.on_state = self._stamper_state
            stamper.on_backlog = self._stamper_backlog
        saved = self.cursor_store.load() if self.cursor_store is not None else None
        self._start_now = saved is None and start == "now"
        self._snapshot = saved is None and start == "snapshot"  # taken by the engine, before it reads the log
        self._skip: set[int] = set()  # changes after the snapshot's cursor that its rows hold
        self._restarted: ChangeEvent | None = None  # what a snapshot tried again starts with
        try:
            if saved is not None:
                first = saved
            elif isinstance(start, str):
                # "now" is read from the log at start(), "snapshot" by the engine
                first = START if self._start_now or self._snapshot else Cursor.parse(start)
            else:
                first = start or START
        except ValueError as exc:
            raise ConfigError(str(exc), hint="a cursor is seq:id, as events carry it; 0:0 is the beginning, "
                              "'now' the newest change, 'snapshot' the current rows then what follows") from None
        self._sequencer = Sequencer(self.topics, first)
        self.stats._delivered = lambda: self._sequencer.cursor
        self._acked = first
        self._inbox: asyncio.Queue[_Push | _Up | _Down] = asyncio.Queue(queue_size)
        self._out: asyncio.Queue[tuple[ChangeEvent, bool] | BaseException | object] = asyncio.Queue(queue_size)
        self._callbacks: list[tuple[str | None, Callback]] = []
        self._iterating = False
        self._yielded: ChangeEvent | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._pushing = False
        self._behind = False
        # A pushed change the read after it did not reach, and how many reads have looked for it since.
        self._awaited: Cursor | None = None
        self._awaited_reads = 0
        self._confirmed_at = time.monotonic()  # the last push, or the last read that found the stream complete
        self._read_failures_in_a_row = 0
        self._ready = asyncio.Event()

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def from_env(cls, *, topics: Sequence[str] | None = None, transport: str = "auto", reader: str = "auto",
                 **options: Any) -> Subscriber:
        """Built from SUPABASE_URL, SUPABASE_SERVICE_ROLE_KEY / SUPABASE_ANON_KEY, DATABASE_URL and
        SUPABASE_PUSH_REST_URL: see :meth:`from_settings`."""
        return cls.from_settings(Settings.from_env(), topics=topics, transport=transport, reader=reader,
                                 rest_url=os.environ.get("SUPABASE_PUSH_REST_URL") or None, **options)

    @classmethod
    def from_supabase(cls, client: Any, *, topics: Sequence[str] | None = None, **options: Any) -> Subscriber:
        """``Subscriber.from_supabase(supabase, topics=[...])``: the project URL and key of a supabase-py
        client (sync or async), pushes through its Realtime and reads through its PostgREST, as its
        signed-in user when there is one (their token, followed across refreshes), else as its key.
        Other options as :meth:`from_settings` (``rest_url``, ``start``, ``cursor_store`` ...)."""
        from .._supabase_client import session_token, settings_of

        token = session_token(client)
        options.setdefault("access_token", token)
        return cls.from_settings(settings_of(client), topics=topics, rest_token=token, **options)

    @classmethod
    def from_settings(cls, settings: Settings, *, topics: Sequence[str] | None = None, transport: str = "auto",
                      reader: str | Reader = "auto", rest_url: str | None = None, liveness_interval: float = 10.0,
                      access_token: TokenSource | None = None,
                      rest_token: Callable[[], Awaitable[str | None]] | None = None, stamp: bool = True,
                      **options: Any) -> Subscriber:
        """Push: Realtime when SUPABASE_URL and a key are set, else LISTEN when DATABASE_URL is.
        Reads by cursor: SQL when DATABASE_URL is set, else PostgREST at ``rest_url``
        (default ``<SUPABASE_URL>/rest/v1``).

        ``transport`` forces the push transport (``realtime``, ``listen``, or ``poll`` for none);
        ``reader`` forces the reader (``sql`` or ``rest``), or is one (a :class:`Reader` shared with other
        parts: the subscriber closes it when it closes). ``access_token`` gives Realtime a user
        JWT (a string, or a function returning a fresh one) that is refreshed before it expires;
        ``rest_token`` does the same for reads through PostgREST. With DATABASE_URL and ``stamp``, the
        subscriber runs a :class:`~supabase_push.stamper.Stamper` (one process per database leads).
        """
        chosen_reader = reader if not isinstance(reader, str) else \
            reader_for(settings, reader, rest_url=rest_url, access_token=rest_token)
        push = transport_from_settings(settings, transport, liveness_interval=liveness_interval,
                                       access_token=access_token)
        if push is None and transport == "auto":
            log.warning("no push transport: Realtime is not configured (SUPABASE_URL and a key) and there is no "
                        "DATABASE_URL to LISTEN on; polling the change log through %s every %.2g s",
                        chosen_reader.describe(), options.get("poll_interval", 1.0))
        stamper = Stamper(settings.database_url, failure_level=logging.INFO) if stamp and settings.database_url \
            else None
        return cls(topics=topics, push=push, reader=chosen_reader, stamper=stamper, **options)

    # -- consuming --------------------------------------------------------------------------

    def on(self, topic: str | None, callback: Callback) -> Subscriber:
        """Call ``callback(event)`` for every event on ``topic`` (None: every topic; gap events go
        to every callback). Sync or async; an exception is logged and counted, and delivery goes on."""
        self._callbacks.append((topic, callback))
        return self

    def __aiter__(self) -> Subscriber:
        self._iterating = True
        return self

    async def __anext__(self) -> ChangeEvent:
        """The next event; asking for it marks the one before as done. Safe to cancel (nothing is lost)."""
        self._iterating = True
        if self._yielded is not None:
            self._finished(self._yielded)
            self._yielded = None
        while True:
            item = await self._out.get()
            if item is _END:
                self._out.put_nowait(_END)  # every later call ends too
                raise StopAsyncIteration
            if isinstance(item, BaseException):
                raise item
            event, visible = cast(tuple[ChangeEvent, bool], item)
            if visible:
                self._yielded = event
                return event
            self._finished(event)

    @property
    def cursor(self) -> Cursor:
        """The last change accounted for (may run ahead of what your loop has processed)."""
        return self._sequencer.cursor

    async def wait_ready(self) -> None:
        """Until the push transport is subscribed or has failed its first try (at once without one).

        Changes committed from then on are pushed; earlier ones are read from the log. Either
        way every change after the start cursor is delivered."""
        await self._ready.wait()

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> Subscriber:
        """Claims the cursor store and checks the start cursor against the log, then runs.

        :class:`ConfigError` if another subscriber holds the cursor file, or if the cursor is
        ahead of the log's newest change (a file from another database, or kept across an
        uninstall): nothing after it would ever be delivered, silently."""
        if self._tasks:
            raise RuntimeError("this subscriber is already running")
        claim = getattr(self.cursor_store, "claim", None)
        if claim is not None:
            claim()
        try:
            if self._start_now:
                self._sequencer.cursor = self._acked = await self.reader.head()
                self._start_now = False
            elif self._sequencer.cursor > START:
                await self._check_not_ahead()
        except BaseException:
            self._release_store()
            raise
        self._tasks = [asyncio.create_task(self._engine(), name="supabase-push-engine")]
        if self.stamper is not None:
            await self.stamper.start()
        if self.push is not None:
            self._tasks.append(asyncio.create_task(self._supervise(self.push), name="supabase-push-transport"))
        else:
            self.stats.state = f"poll:{self.reader.name}"
        return self

    def _release_store(self) -> None:
        release = getattr(self.cursor_store, "close", None)
        if release is not None:
            release()

    async def _check_not_ahead(self) -> None:
        try:
            head = await self.reader.head()
        except TransportError as exc:  # the engine retries reading; the check waits for the next start
            log.debug("could not check the start cursor against the log: %s", exc)
            return
        if self._sequencer.cursor > head:
            where = f"the cursor file {self.cursor_store.path}" if isinstance(self.cursor_store, FileCursorStore) \
                else "the start cursor"
            raise ConfigError(
                f"{where} holds {self._sequencer.cursor}, ahead of the change log's newest change ({head}): "
                "nothing after it would ever arrive",
                hint="a cursor from another database, or kept across uninstall and apply: start from 0:0 (delete "
                     "the cursor file) or from 'now'")

    async def close(self, *, finished: bool = True) -> None:
        """Stop. ``finished``: the event your loop holds now counts as done (its cursor is saved)."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            done, stuck = await asyncio.wait(self._tasks, timeout=STOP_GRACE)
            for task in done:  # an engine failure was logged already
                if not task.cancelled():
                    task.exception()
            for task in stuck:  # a client library that swallowed the cancellation: say where, and go on
                log.error("%s did not stop within %g s of being cancelled; closing without it. It waits at:\n%s",
                          task.get_name(), STOP_GRACE, _where(task))
        self._tasks = []
        if self.stamper is not None:
            await self.stamper.close()
        await self.reader.close()
        if finished and self._yielded is not None:
            self._finished(self._yielded)
        self._release_store()
        self.stats.state = "stopped"
        self._end_iteration(_END)

    async def __aenter__(self) -> Subscriber:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close(finished=exc is None)

    async def run(self) -> None:
        """Deliver to the ``on()`` callbacks until cancelled (for programs that only use callbacks)."""
        async with self:
            await self._tasks[0]

    # -- the engine -------------------------------------------------------------------------

    async def _engine(self) -> None:
        try:
            if self.push is None:
                self._ready.set()
            await self._warn_of_unknown_topics()
            while self._snapshot and not await self._take_snapshot():
                await asyncio.sleep(self._read_backoff())
            await self._catch_up("catch-up")
            while True:
                try:
                    # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
                    async with asyncio.timeout(self._next_wake()):
                        item = await self._inbox.get()
                except TimeoutError:
                    await self._catch_up("catch-up" if self._pushing else "poll")
                    if not self._behind:
                        self._confirmed_at = time.monotonic()
                    continue
                if isinstance(item, _Push):
                    await self._on_push(item.event)
                elif isinstance(item, _Up):
                    await self._catch_up("catch-up")  # whatever committed while push was down
                    self._switch(f"push:{item.transport}")
                    self.stats.connected = self._pushing = True
                    self._confirmed_at = time.monotonic()
                else:
                    self._note_failure(item.reason, item.refused)
                    if self._pushing or self.stats.state == "starting":
                        log.warning("push transport down (%s): polling %s every %.2g s while it reconnects",
                                    item.reason, self.reader.describe(), self.poll_interval)
                        self._switch(f"poll:{self.reader.name}")
                    self._pushing = False
        except AccessRefusedError as exc:  # only with stop_on_refusal
            log.info("the subscriber stopped: %s", exc)
            self._end_iteration(exc)
        except Exception as exc:  # a bug: end the iteration with it rather than hang
            log.exception("the subscriber stopped on an unexpected error")
            self._end_iteration(exc)
            raise

    async def _warn_of_unknown_topics(self) -> None:
        """A topic nothing routes nor publishes on gets nothing, silently: most likely a typo. Said once, at start,
        where the reader can tell (ours, on schema 9, with the rights to ask)."""
        if not isinstance(self.reader, SqlReader | RestReader):
            return
        try:
            known = await self.reader.known_topics()
        except TransportError:
            return  # the reads will say it
        if known is None:
            return
        unknown = [topic for topic in self.topics if topic not in known]
        if unknown:
            log.warning("no table is routed to %s and no events are declared on %s in %s: nothing will arrive there"
                        " until apply adds one (topics here: %s)", ", ".join(unknown),
                        "it" if len(unknown) == 1 else "them", self.reader.describe(),
                        ", ".join(sorted(known)) or "none")

    def _end_iteration(self, last: object) -> None:
        """Drop what is queued but not handed out (not saved, so the next run reads it again),
        then make ``last`` (the end, or the error) the next thing ``async for`` gets."""
        while not self._out.empty():
            self._out.get_nowait()
        self._out.put_nowait(last)

    def _next_wake(self) -> float:
        if self._behind:
            return min(self.poll_interval, self._read_backoff())
        if self._awaited is not None:
            return Backoff(0.05, self.verify_interval).delay(self._awaited_reads)
        if not self._pushing:
            return self.poll_interval
        # One verify read per verify_interval of push silence, counted from the last push or the last verify.
        return max(0.0, self.verify_interval - (time.monotonic() - self._confirmed_at))

    async def _on_push(self, push: ChangeEvent | Hint | None) -> None:
        self._confirmed_at = time.monotonic()
        if push is None:  # the transport dropped some, or sent a change it could not read: read them
            await self._catch_up("catch-up")
            return
        event = push.event if isinstance(push, Hint) else push
        verdict = self._sequencer.judge(event)
        if verdict is Verdict.DUPLICATE:
            self.stats.duplicates += 1
        elif verdict is Verdict.DELIVER and not self._behind:
            assert self.push is not None
            if isinstance(push, Hint):  # the next change, as the log has it
                await self._catch_up(self.push.name)
                self._await(event)
            else:
                await self._deliver(event.model_copy(update={"source": self.push.name}))
        else:
            log.debug("push %s does not follow %s (prev %s): reading by cursor", event.cursor,
                      self._sequencer.cursor, event.prev)
            await self._catch_up("catch-up")
            self._await(event)

    def _await(self, pushed: ChangeEvent) -> None:
        """After the read a push asked for: if the pushed change is not read yet, read again soon (50 ms, then
        backing off up to verify_interval), not at the next push or verify read. Realtime decodes a stamping
        round once its commit is flushed, a moment before reads can see it (longer while a synchronous standby
        holds it)."""
        if self._sequencer.cursor < pushed.cursor and (self._awaited is None or self._awaited < pushed.cursor):
            self._awaited, self._awaited_reads = pushed.cursor, 1

    async def _take_snapshot(self) -> bool:
        """Deliver the rows of one snapshot and move the cursor to where it stands; False if reading failed
        (the next try starts with a SNAPSHOT event without a record: drop what this one gave)."""
        if self._restarted is not None and self.stats.snapshot_rows:
            await self._deliver(self._restarted)
        try:
            # aclosing: the snapshot's connection closes when delivery stops half-way (a close() cancels it)
            async with contextlib.aclosing(self.reader.snapshot(self.topics, self.page_size)) as items:
                async for item in items:
                    if isinstance(item, SnapshotStart):
                        self._sequencer.cursor = item.cursor
                        self.stats.connected = True
                        self._skip = set(item.skip)
                        self._restarted = item.event("*", "", "", None)
                        continue
                    for event in item:
                        self.stats.snapshot_rows += 1
                        await self._deliver(event)
        except TransportError as exc:
            self._read_failed(exc)
            return False
        self._snapshot = False
        return True

    async def _catch_up(self, source: Source) -> None:
        """Read from the cursor until the log has nothing more."""
        try:
            async for page in read_pages(self.reader, self._sequencer.cursor, self.topics, page_size=self.page_size,
                                         source=source):
                self.stats.connected = True
                fresh = self._sequencer.fresh(page)
                self.stats.duplicates += len(page) - len(fresh)
                if fresh and source == "catch-up":
                    self.stats.catch_ups += 1
                for event in fresh:
                    await self._deliver(event)
        except TransportError as exc:
            self._read_failed(exc)
            return
        if self._read_failures_in_a_row > 1:
            log.warning("reading the change log works again, after %d failed attempts", self._read_failures_in_a_row)
        self._behind = False
        self._read_failures_in_a_row = 0
        self.stats.last_error, self.stats.refused = None, False
        if self._awaited is not None:
            if self._sequencer.cursor >= self._awaited or self._awaited_reads >= _AWAITED_READS:
                self._awaited, self._awaited_reads = None, 0
            else:
                self._awaited_reads += 1

    def _note_failure(self, reason: str, refused: bool) -> None:
        """The reason to report: a refusal (wrong key or password) outweighs other failures until a read works."""
        if refused or not self.stats.refused:
            self.stats.last_error, self.stats.refused = reason, refused

    def _read_failed(self, exc: TransportError) -> None:
        """Said once, then counted: a database that is down for a minute is one warning, not sixty."""
        self.stats.read_failures += 1
        self._read_failures_in_a_row += 1
        self._behind = True
        refused = isinstance(exc, AccessRefusedError)
        self._note_failure(str(exc), refused)
        if refused and self.stop_on_refusal:
            raise exc
        if self._read_failures_in_a_row == 1:
            log.warning("reading the change log failed (%s); retrying with backoff", exc)
        else:
            log.debug("reading the change log failed again (%d in a row): %s", self._read_failures_in_a_row, exc)

    def _read_backoff(self) -> float:
        return Backoff(0.1, self.max_backoff).delay(self._read_failures_in_a_row + 1)

    async def _deliver(self, event: ChangeEvent) -> None:
        if event.op != "SNAPSHOT":
            self._sequencer.advance(event)
            if self._skip and event.id in self._skip:  # the snapshot's rows hold it already
                self._skip.discard(event.id)
                self.stats.snapshot_skipped += 1
                return
        gap = event.op == "GAP"
        visible = (gap or event.op == "TRUNCATE" or (event.op == "SNAPSHOT" and event.record is None)  # no row
                   or all(f.matches(event) for f in self.filters))
        if gap:
            self.stats.gaps += 1
            log.warning("gap: changes after %s up to %s were pruned from the change log before this subscriber "
                        "read them", (event.record or {}).get("after"), event.cursor)
        if visible:
            self.stats.delivered[event.source or "poll"] += 1
            self.stats.lag_ms = max(0.0, (time.time() - event.commit_ts.timestamp()) * 1000)
            for topic, callback in self._callbacks:
                if topic is None or topic == event.topic or gap:
                    await self._call(callback, event)
        else:
            self.stats.filtered += 1
        if self._iterating or not self._callbacks:
            await self._out.put((event, visible))  # a slow consumer holds the engine here: backpressure, not loss
        else:
            self._finished(event)

    async def _call(self, callback: Callback, event: ChangeEvent) -> None:
        try:
            result = callback(event)
            if inspect.isawaitable(result):
                await result
        except Exception:
            self.stats.callback_errors += 1
            log.exception("a callback raised on %s %s (delivery goes on)", event.topic, event.cursor)

    def ack(self, cursor: Cursor | str) -> None:
        """Your code is done with every change up to ``cursor``: the cursor store saves it, and a run that
        resumes from the store starts after it. With ``auto_ack`` (the default) the subscriber acknowledges
        each event itself, when your loop asks for the next one or its callbacks have returned; without it,
        only this does (e.g. once the work an event started has finished elsewhere). A cursor not delivered
        yet is refused (ValueError); one at or before the last acknowledged changes nothing."""
        position = Cursor.parse(cursor) if isinstance(cursor, str) else cursor
        if position > self._sequencer.cursor:
            raise ValueError(f"cannot acknowledge {position}: the subscriber has delivered up to "
                             f"{self._sequencer.cursor}")
        self._acknowledge(position)

    @property
    def acknowledged(self) -> Cursor:
        """The last change acknowledged (what the cursor store holds, when there is one)."""
        return self._acked

    def _finished(self, event: ChangeEvent) -> None:
        if self.auto_ack and event.op != "SNAPSHOT":
            self._acknowledge(event.cursor)

    def _acknowledge(self, position: Cursor) -> None:
        # Not before every change the snapshot holds has gone by: a run resumed from there would deliver them.
        if position <= self._acked or self._skip:
            return
        if self.cursor_store is not None:
            self.cursor_store.save(position)
        self._acked = position

    def _stamper_state(self, state: str) -> None:
        self.stats.stamper = state

    def _stamper_backlog(self, backlog: Backlog) -> None:
        self.stats.waiting_changes, self.stats.waiting_seconds = backlog.changes, backlog.seconds

    def _switch(self, state: str) -> None:
        if state != self.stats.state:
            if self.stats.state != "starting":
                self.stats.switches += 1
            log.info("subscriber: %s -> %s", self.stats.state, state)
            self.stats.state = state

    # -- the push transport's supervisor ------------------------------------------------------

    async def _supervise(self, push: PushTransport) -> None:
        async def up() -> None:
            self._ready.set()
            await self._inbox.put(_Up(push.name))

        async def emit(push: ChangeEvent | Hint | None) -> None:
            await self._inbox.put(_Push(push))

        failures = 0
        while True:
            started = time.monotonic()
            refused = False
            try:
                await push.run(self.topics, emit, up)
                reason = "the transport stopped"
            except SupabasePushError as exc:
                reason, refused = str(exc), isinstance(exc, AccessRefusedError)
            except Exception as exc:  # a bug in a client library must not end the subscription
                log.exception("push transport %s failed unexpectedly", push.name)
                reason = repr(exc)
            self.stats.push_failures += 1
            self._ready.set()
            failures = 1 if time.monotonic() - started > 30 else failures + 1
            await self._inbox.put(_Down(reason, refused))
            delay = Backoff(0.2, self.max_backoff).delay(failures)
            log.info("reconnecting %s in %.2f s", push.describe(), delay)
            await asyncio.sleep(delay)


def _where(task: asyncio.Task[Any]) -> str:
    """Where a suspended task waits, as a traceback's lines: its coroutine and each one it awaits."""
    frames: list[Any] = []
    awaiting: Any = task.get_coro()
    while awaiting is not None and len(frames) < 50:
        frame = getattr(awaiting, "cr_frame", None) or getattr(awaiting, "gi_frame", None) \
            or getattr(awaiting, "ag_frame", None)
        if frame is None:
            break
        frames.append(frame)
        awaiting = getattr(awaiting, "cr_await", None) or getattr(awaiting, "gi_yieldfrom", None) \
            or getattr(awaiting, "ag_await", None)
    return "".join(traceback.StackSummary.extract((f, f.f_lineno) for f in frames).format()) or "?"
