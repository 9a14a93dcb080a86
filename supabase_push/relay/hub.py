"""One subscriber's events fanned out to many streams, each filtered for its principal.

The hub keeps the newest events in a replay ring, so a browser that reconnects with its
Last-Event-ID gets exactly what it missed: from the ring when the ring reaches back that
far, else from the change log up to the ring and then the ring. Registration and the ring
snapshot happen in one step with no await between them, so nothing falls in between.
Each stream has a bounded buffer; a stream that lets it fill is cut off (it reconnects
and resumes by cursor), so one slow client never holds up the others or the subscriber.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..changelog import SnapshotStart
from ..errors import TransportError
from ..events import ChangeEvent, Cursor
from ..subscribe.readers import Reader, read_pages
from . import sse
from .auth import Principal, Refused
from .policy import Policy

__all__ = ["Connection", "Hub", "Item", "Rate"]

log = logging.getLogger("supabase_push.relay")


@dataclass(frozen=True, slots=True)
class Item:
    """An event and its SSE frame, encoded once however many streams it goes to (and once per other
    view of it: an owner change is a removal to one user and an arrival to another)."""

    event: ChangeEvent
    position: Cursor
    frame: bytes
    views: dict[str, Item] = field(default_factory=dict)

    @classmethod
    def of(cls, event: ChangeEvent) -> Item:
        return cls(event, event.cursor, _encode(event))

    def seen_as(self, view: ChangeEvent) -> Item:
        """This item as one viewer sees its event (itself, or a removal or arrival made once)."""
        if view is self.event:
            return self
        seen = self.views.get(view.op)
        if seen is None:
            seen = self.views[view.op] = Item.of(view)
        return seen


def _encode(event: ChangeEvent, *, with_id: bool = True) -> bytes:
    data = event.model_dump_json(by_alias=True, exclude={"prev"})  # prev would tell of other topics' traffic
    kind = "gap" if event.op == "GAP" else "snapshot" if event.op == "SNAPSHOT" else None
    return sse.frame(data, id=str(event.cursor) if with_id and event.op != "SNAPSHOT" else None, event=kind)


_HEARTBEAT = sse.comment("heartbeat")


@dataclass(eq=False)
class Connection:
    id: int
    principal: Principal
    topics: frozenset[str]
    queue: asyncio.Queue[Item | None]
    """Events to send, and None for a heartbeat."""
    after: Cursor | None
    """Where the stream resumes (None: from now)."""
    snapshot: bool = False
    """Start with the current rows (``?start=snapshot``), then the changes after them."""
    skip: set[int] = field(default_factory=set)
    """Changes after the snapshot's cursor that its rows hold; until they have gone by, frames carry no id
    (a browser that reconnects then takes the snapshot again rather than resume where it would double them)."""
    backlog_until: Cursor | None = None
    """Read the log after ``after`` up to here first (the ring did not reach back far enough)."""
    replay: list[Item] = field(default_factory=list)
    dropped: bool = False
    """Cut off for being too slow."""
    expired: bool = False
    """Ended because its token expired."""
    cut: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the stream must end now: whoever serves it must close it (its send may be blocked)."""
    sent: int = 0
    opened: float = field(default_factory=time.monotonic)


class Rate:
    """Events per second over the last ``window`` seconds, in one-second buckets."""

    def __init__(self, window: int = 10) -> None:
        self.window = window
        self._buckets: deque[list[float]] = deque()

    def add(self, n: int = 1, now: float | None = None) -> None:
        second = int(time.monotonic() if now is None else now)
        if self._buckets and self._buckets[-1][0] == second:
            self._buckets[-1][1] += n
        else:
            self._buckets.append([second, n])
        while self._buckets and self._buckets[0][0] <= second - self.window:
            self._buckets.popleft()

    def per_second(self, now: float | None = None) -> float:
        second = int(time.monotonic() if now is None else now)
        return sum(n for s, n in self._buckets if s > second - self.window) / self.window


class Hub:
    def __init__(self, policy: Policy, reader: Reader, *, buffer: int = 1000, ring_size: int = 10_000,
                 max_per_user: int = 5, page_size: int = 500) -> None:
        self.policy = policy
        self.reader = reader
        """For streams that resume from further back than the ring."""
        self.buffer = buffer
        self.max_per_user = max_per_user
        self.page_size = page_size
        self._ring: deque[Item] = deque(maxlen=ring_size)
        self._base: Cursor | None = None
        """The ring holds every event after this cursor (None until the hub is started)."""
        self._ids = itertools.count(1)
        self._connections: set[Connection] = set()
        self._by_user: dict[str, set[Connection]] = {}
        self._admins: set[Connection] = set()
        self.events_in = Rate()
        self.frames_out = Rate()
        self.dropped_slow = 0
        self.refused = Counter[str]()

    # -- the subscriber side ------------------------------------------------------------------

    def start_at(self, cursor: Cursor) -> None:
        """The subscriber's start: the ring covers everything after it."""
        self._base = cursor

    def feed(self, event: ChangeEvent) -> None:
        """Called for every event the subscriber delivers, in cursor order."""
        item = Item.of(event)
        if len(self._ring) == self._ring.maxlen:
            self._base = self._ring[0].position
        self._ring.append(item)
        self.events_in.add()
        for conn in self._audience(event):
            if not conn.dropped and (seen := self._seen(conn, item)) is not None:
                self._offer(conn, seen)

    def _audience(self, event: ChangeEvent) -> Iterable[Connection]:
        """The streams that may see ``event`` (a superset: an index by owner, so a change is not checked
        against every stream)."""
        if self.policy.for_everyone(event):
            return list(self._connections)
        owners = self.policy.owners_of(event)
        return [*(conn for owner in owners for conn in self._by_user.get(owner, ())), *self._admins]

    async def beat(self, interval: float) -> None:
        """Queue a heartbeat comment on every stream each ``interval`` seconds (one timer for all streams,
        not one per stream per event). A stream whose buffer is full is cut off here too."""
        while True:
            await asyncio.sleep(interval)
            for conn in list(self._connections):
                if not conn.dropped:
                    self._offer(conn, None)

    def expire(self, conn: Connection) -> None:
        conn.expired = True
        conn.cut.set()

    def _offer(self, conn: Connection, item: Item | None) -> None:
        try:
            conn.queue.put_nowait(item)
        except asyncio.QueueFull:
            self._drop(conn)

    def _drop(self, conn: Connection) -> None:
        conn.dropped = True
        self.dropped_slow += 1
        log.warning("relay: dropping stream %d of %s (tier %s): %d events unread; it resumes by cursor when it "
                    "reconnects", conn.id, conn.principal.user_id, conn.principal.tier, conn.queue.qsize())
        while not conn.queue.empty():
            conn.queue.get_nowait()
        conn.cut.set()

    # -- the stream side ----------------------------------------------------------------------

    def open(self, principal: Principal, topics: Sequence[str], after: Cursor | None, *,
             snapshot: bool = False) -> Connection:
        """Register a stream (Refused 429 past the per-user limit). Live events queue from here on. With
        ``snapshot`` (and no ``after``), the stream starts with the rows of its topics' tables as this
        principal may see them, read when it starts: every later change is then in the queue."""
        if self._base is None:
            raise Refused("the relay is starting", status=503)
        mine = self._by_user.get(principal.user_id, set())
        if not principal.admin and len(mine) >= self.max_per_user:
            self.refused["per-user limit"] += 1
            raise Refused(f"{principal.user_id} has {len(mine)} streams open, the most this relay allows",
                          status=429)
        conn = Connection(next(self._ids), principal, frozenset(topics), asyncio.Queue(self.buffer), after,
                          snapshot=snapshot and after is None)
        if after is not None:
            if after < self._base:
                conn.backlog_until = self._base
            conn.replay = [seen for item in self._ring
                           if item.position > after and (seen := self._seen(conn, item)) is not None]
        self._connections.add(conn)
        (self._admins if principal.admin else self._by_user.setdefault(principal.user_id, set())).add(conn)
        return conn

    def close(self, conn: Connection) -> None:
        self._connections.discard(conn)
        self._admins.discard(conn)
        mine = self._by_user.get(conn.principal.user_id)
        if mine is not None:
            mine.discard(conn)
            if not mine:
                del self._by_user[conn.principal.user_id]

    async def stream(self, conn: Connection, *, retry_ms: int = 1000) -> AsyncIterator[bytes]:
        """The SSE bytes of one stream: what it missed, then live events and heartbeats."""
        last = conn.after
        yield sse.comment(f"stream {conn.id}") + sse.retry(retry_ms)
        if conn.snapshot:
            async for chunk in self._snapshot(conn):
                if isinstance(chunk, Cursor):
                    last = chunk
                else:
                    yield chunk
        if conn.backlog_until is not None:
            async for item in self._backlog(conn):
                last = item.position
                yield self._sent(conn, item)
        for item in conn.replay:
            if last is None or item.position > last:
                last = item.position
                yield self._sent(conn, item)
        conn.replay = []
        while True:
            queued = await conn.queue.get()
            if queued is None:
                yield _HEARTBEAT
            elif last is None or queued.position > last:
                last = queued.position
                yield self._sent(conn, queued)

    def _sent(self, conn: Connection, item: Item) -> bytes:
        frame = item.frame
        if conn.skip:  # just after a snapshot
            if item.event.id in conn.skip:  # its rows hold this change
                conn.skip.discard(item.event.id)
                return b""
            frame = _encode(item.event, with_id=False)
        conn.sent += 1
        self.frames_out.add()
        return frame

    async def _snapshot(self, conn: Connection) -> AsyncIterator[bytes | Cursor]:
        """``snapshot-start``, one ``snapshot`` frame per row this stream may see, ``snapshot-end``; then the
        snapshot's cursor, after which the stream goes on."""
        rows = 0
        try:
            # aclosing: the snapshot's connection closes when the stream goes half-way through
            async with contextlib.aclosing(self.reader.snapshot(sorted(conn.topics), self.page_size)) as items:
                async for item in items:
                    if isinstance(item, SnapshotStart):
                        conn.skip = set(item.skip)
                        start = item.cursor
                        yield sse.frame(json.dumps({"cursor": str(start)}), event="snapshot-start")
                        continue
                    for event in item:
                        if (view := self._view(conn, event)) is not None:
                            rows += 1
                            yield _encode(view)
        except TransportError as exc:
            log.warning("relay: cannot read a snapshot for stream %d (%s); closing it, it will retry", conn.id, exc)
            raise
        yield sse.frame(json.dumps({"cursor": str(start), "rows": rows}), event="snapshot-end")
        yield start

    async def _backlog(self, conn: Connection) -> AsyncIterator[Item]:
        """The log after the stream's cursor, up to where the ring begins."""
        assert conn.after is not None and conn.backlog_until is not None
        try:
            async for page in read_pages(self.reader, conn.after, sorted(conn.topics), page_size=self.page_size,
                                         until=conn.backlog_until):
                for event in page:
                    if (view := self._view(conn, event)) is not None:
                        yield Item.of(view)
        except TransportError as exc:
            log.warning("relay: cannot read the change log for stream %d (%s); closing it, it will retry",
                        conn.id, exc)
            raise

    def _view(self, conn: Connection, event: ChangeEvent) -> ChangeEvent | None:
        """The event as this stream may see it, or None."""
        if event.op != "GAP" and event.topic not in conn.topics:
            return None
        return self.policy.view(conn.principal, event)

    def _seen(self, conn: Connection, item: Item) -> Item | None:
        """The item as this stream may see it (queued as such, so sending it decides nothing), or None."""
        view = self._view(conn, item.event)
        return None if view is None else item.seen_as(view)

    # -- numbers ------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        per_tier = Counter(c.principal.tier or "none" for c in self._connections)
        per_user = Counter(c.principal.user_id for c in self._connections)
        return {
            "connections": len(self._connections),
            "per_user": dict(per_user.most_common()),
            "per_tier": dict(per_tier),
            "events_per_second": round(self.events_in.per_second(), 2),
            "frames_per_second": round(self.frames_out.per_second(), 2),
            "dropped_slow_clients": self.dropped_slow,
            "refused": dict(self.refused),
            "replay_ring": {"events": len(self._ring), "after": str(self._base) if self._base else None},
        }
