"""The Broadcaster: validates, queues, coalesces and retries; a backend only delivers.

Messages leave in the order they were given. One batch is in flight at a time; what
arrives meanwhile waits in a bounded queue and leaves together in the next batch, so a
burst becomes a few requests without delaying a lone message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from .. import models
from .._backoff import Backoff
from ..config import Settings
from ..errors import (
    BroadcasterClosedError,
    BroadcastError,
    DeliveryError,
    DeliveryTimeout,
    SupabasePushError,
)
from .backends import Backend, TransientError, backend_from_settings
from .message import Message

if TYPE_CHECKING:  # imported where used: httpx and psycopg only for the publisher a broadcaster has
    from .publishers import Publisher

__all__ = ["BroadcastStats", "Broadcaster", "RetryPolicy"]

log = logging.getLogger("supabase_push.broadcast")

MAX_BATCH_BYTES = 1_000_000  # one request's payloads; well under every plan's request limit


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, on HTTP 429, 5xx, timeouts and dropped connections."""

    attempts: int = 6
    """Tries per message, the first included."""
    base_delay: float = 0.05
    max_delay: float = 5.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        backoff = Backoff(self.base_delay, self.max_delay).delay(attempt)
        return max(backoff, min(retry_after, 60.0)) if retry_after is not None else backoff


@dataclass
class BroadcastStats:
    sent: int = 0
    """Messages the backend accepted."""
    failed: int = 0
    requests: int = 0
    """Calls to the backend, retries included."""
    retries: int = 0
    published: int = 0
    """Durable events published (:meth:`Broadcaster.publish`)."""


@dataclass
class _Pending:
    message: Message
    future: asyncio.Future[None] = field(repr=False)


class Broadcaster:
    """Sends broadcasts through one backend.

    ``await broadcaster.broadcast(topic, event, payload)`` returns once the backend has
    accepted the message, and raises a :class:`~supabase_push.errors.BroadcastError` if it
    cannot be delivered. Use it as ``async with``, or call :meth:`close`: it waits for every
    queued message.
    """

    def __init__(self, backend: Backend, *, private: bool = True, max_payload_bytes: int = 256_000,
                 max_pending: int = 10_000, max_batch: int | None = None, linger: float = 0.0,
                 retry: RetryPolicy | None = None, close_timeout: float = 30.0,
                 publisher: Publisher | None = None) -> None:
        self.backend = backend
        self.publisher = publisher
        """Where :meth:`publish` appends durable events (None: publishing is not configured)."""
        self.private = private
        limit = backend.max_payload_bytes
        self.max_payload_bytes = min(max_payload_bytes, limit) if limit else max_payload_bytes
        self._limit_reason = backend.max_payload_reason if limit and limit < max_payload_bytes else None
        self.max_batch = min(max_batch or backend.max_batch, backend.max_batch)
        self.max_pending = max_pending
        self.linger = linger
        self.retry = retry or RetryPolicy()
        self.close_timeout = close_timeout
        self.stats = BroadcastStats()
        self._queue: asyncio.Queue[_Pending] | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._in_flight: list[_Pending] = []
        self._carry: _Pending | None = None
        self._state = "new"  # new -> open -> closing -> closed

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def from_env(cls, *, required: bool = True, **options: Any) -> Broadcaster:
        """A broadcaster for what the environment configures (see the README's table).

        Unconfigured, it raises :class:`~supabase_push.errors.ConfigError` naming the
        variables it looked for; with ``required=False`` it logs that and drops messages.
        """
        return cls.from_settings(Settings.from_env(), required=required, **options)

    @classmethod
    def from_supabase(cls, client: Any, *, timeout: float = 5.0, **options: Any) -> Broadcaster:
        """``Broadcaster.from_supabase(supabase)``: Realtime REST broadcasts with a supabase-py client's
        project URL and key (sync or async client), as its signed-in user when there is one (private
        topics then need that user's RLS write policy), else as its key."""
        from .._supabase_client import session_token, settings_of
        from .publishers import RestPublisher
        from .rest import RestBackend

        settings = settings_of(client)
        assert settings.supabase_url is not None and settings.api_key is not None
        backend = RestBackend(settings.supabase_url, settings.api_key, timeout=timeout,
                              access_token=session_token(client))
        options.setdefault("publisher", RestPublisher(f"{settings.supabase_url}/rest/v1", settings.api_key,
                                                      timeout=timeout))
        options.setdefault("private", settings.private)
        options.setdefault("max_payload_bytes", settings.max_payload_bytes)
        return cls(backend, **options)

    @classmethod
    def from_settings(cls, settings: Settings, *, required: bool = True, timeout: float = 5.0,
                      **options: Any) -> Broadcaster:
        from .publishers import publisher_from_settings

        backend = backend_from_settings(settings, required=required, timeout=timeout)
        if backend.name in ("rest", "websocket") and settings.private and not settings.service_role_key:
            log.warning("broadcasting to private topics with the anon key: Realtime drops these messages "
                        "unless an RLS policy lets the anon role write (set SUPABASE_SERVICE_ROLE_KEY, "
                        "or SUPABASE_PUSH_PRIVATE=false)")
        options.setdefault("private", settings.private)
        options.setdefault("max_payload_bytes", settings.max_payload_bytes)
        options.setdefault("publisher", publisher_from_settings(settings, timeout=timeout))
        return cls(backend, **options)

    # -- sending ----------------------------------------------------------------------------

    async def broadcast(self, topic: str, event: str, payload: Mapping[str, Any] | BaseModel, *,
                        private: bool | None = None) -> None:
        """Send one message; returns when the backend has accepted it."""
        message = self._message(topic, event, payload, private)
        pending = _Pending(message, asyncio.get_running_loop().create_future())
        queue = self._open()
        await queue.put(pending)
        if self._state == "closed":  # closed while we waited for room
            raise BroadcasterClosedError("the broadcaster was closed before this message could be queued")
        await asyncio.shield(pending.future)

    def broadcast_nowait(self, topic: str, event: str, payload: Mapping[str, Any] | BaseModel, *,
                         private: bool | None = None) -> asyncio.Future[None]:
        """Queue one message and return at once; the future settles when it is delivered.

        A failure is logged even if nobody awaits the future. Raises BroadcastError when
        ``max_pending`` messages are already waiting.
        """
        message = self._message(topic, event, payload, private)
        pending = _Pending(message, asyncio.get_running_loop().create_future())
        try:
            self._open().put_nowait(pending)
        except asyncio.QueueFull:
            raise BroadcastError(f"{self.max_pending:,} messages are already waiting to be sent",
                                 hint="await broadcast() to wait for room, or raise max_pending") from None
        pending.future.add_done_callback(_log_failure)
        return pending.future

    async def publish(self, topic: str, event: str, payload: Mapping[str, Any] | BaseModel, *,
                      key: str | None = None) -> int:
        """Append a durable event to the change log (``supabase_push.publish``): subscribers, ``tail``, the
        relay and the forwarder get it exactly once, in commit order, like a row change (op ``EVENT``).
        ``key`` deduplicates: a publish that reuses a key is that first event, so a retry is safe (and
        is retried after a dropped connection). Returns the event's change id.

        To publish inside your own transaction, use :func:`supabase_push.publish` with your connection."""
        if self._state in ("closing", "closed"):
            raise BroadcasterClosedError("the broadcaster is closed")
        from .publishers import NOT_CONFIGURED, event_body

        if self.publisher is None:
            raise NOT_CONFIGURED
        body = event_body(payload)
        attempt = 1
        while True:
            try:
                change_id = await self.publisher.publish(topic, event, body, key)
            except TransientError as exc:
                if attempt >= self.retry.attempts:
                    raise _gave_up(exc, attempt, 1, "event(s) not published") from None
                self.stats.retries += 1
                delay = self.retry.delay(attempt, exc.retry_after)
                log.warning("%s; retry %d of %d in %.2f s", exc.reason, attempt, self.retry.attempts - 1, delay)
                await asyncio.sleep(delay)
                attempt += 1
                continue
            self.stats.published += 1
            return change_id

    async def broadcast_position_update(self, position_id: int | str,
                                        position_data: Mapping[str, Any] | models.PositionUpdate, *,
                                        private: bool | None = None) -> None:
        """Send a position's new state to ``position-updates`` (event ``position_update``)."""
        topic, event, payload = models.position_update(position_id, position_data)
        await self.broadcast(topic, event, payload, private=private)

    async def broadcast_trade_executed(self, trade_id: int | str,
                                       trade_data: Mapping[str, Any] | models.TradeExecuted, *,
                                       private: bool | None = None) -> None:
        """Send an executed trade to ``trade-updates`` (event ``trade_executed``)."""
        topic, event, payload = models.trade_executed(trade_id, trade_data)
        await self.broadcast(topic, event, payload, private=private)

    async def broadcast_portfolio_update(self, account_id: str,
                                         portfolio_data: Mapping[str, Any] | models.PortfolioUpdate, *,
                                         private: bool | None = None) -> None:
        """Send a portfolio snapshot to ``portfolio-updates`` (event ``portfolio_update``)."""
        topic, event, payload = models.portfolio_update(account_id, portfolio_data)
        await self.broadcast(topic, event, payload, private=private)

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> Broadcaster:
        """Connect the backend now, so a wrong setting shows at startup rather than at the first send."""
        self._open()
        try:
            await self.backend.connect()
        except TransientError as exc:
            log.warning("%s; sends will retry", exc.reason)
        return self

    async def flush(self) -> None:
        """Wait until every message queued so far has been delivered or has failed."""
        if self._queue is not None:
            await self._queue.join()

    async def close(self) -> None:
        """Deliver what is queued (up to ``close_timeout``), then close the backend.

        Raises BroadcasterClosedError, after logging it, if messages were left undelivered.
        """
        if self._state in ("closing", "closed"):
            return
        self._state = "closing"
        undelivered = 0
        if self._queue is not None and self._dispatcher is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.close_timeout):
                    await self._queue.join()
            self._dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatcher
            undelivered = self._abandon_pending()
        try:
            await self.backend.close()
            if self.publisher is not None:
                await self.publisher.close()
        finally:
            undelivered += self._abandon_pending()
            self._state = "closed"
        if undelivered:
            log.error("%d broadcast(s) were not delivered to %s within %g s of close()",
                      undelivered, self.backend.describe(), self.close_timeout)
            raise BroadcasterClosedError(f"{undelivered} broadcast(s) were not delivered before close",
                                         hint="the backend kept failing: see the warnings logged before")

    async def __aenter__(self) -> Broadcaster:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        try:
            await self.close()
        except BroadcasterClosedError:
            if exc is None:
                raise  # otherwise it was logged, and the original exception matters more

    # -- internals --------------------------------------------------------------------------

    def _message(self, topic: str, event: str, payload: Mapping[str, Any] | BaseModel,
                 private: bool | None) -> Message:
        if self._state in ("closing", "closed"):
            raise BroadcasterClosedError("the broadcaster is closed")
        return Message.build(topic, event, payload, private=self.private if private is None else private,
                             max_bytes=self.max_payload_bytes, limit_reason=self._limit_reason)

    def _open(self) -> asyncio.Queue[_Pending]:
        if self._queue is None:
            self._queue = asyncio.Queue(self.max_pending)
            self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch(self._queue))
            self._state = "open"
            log.info("broadcasting through %s", self.backend.describe())
        return self._queue

    async def _dispatch(self, queue: asyncio.Queue[_Pending]) -> None:
        while True:
            first = self._carry or await queue.get()
            self._carry = None
            await asyncio.sleep(self.linger)  # let producers that are ready right now join this batch
            batch, size = [first], len(first.message.body)
            while len(batch) < self.max_batch and not queue.empty():
                item = queue.get_nowait()
                size += len(item.message.body)
                if size > MAX_BATCH_BYTES:
                    self._carry = item
                    break
                batch.append(item)
            self._in_flight = batch
            await self._deliver(batch)
            self._in_flight = []
            for _ in batch:
                queue.task_done()

    async def _deliver(self, batch: list[_Pending], attempt: int = 1) -> None:
        self.stats.requests += 1
        try:
            await self.backend.send([p.message for p in batch])
        except TransientError as exc:
            if exc.accepted:
                self._settle(batch[:exc.accepted], None)
                batch = batch[exc.accepted:]
            if attempt >= self.retry.attempts:
                return self._settle(batch, _gave_up(exc, attempt, len(batch)))
            self.stats.retries += 1
            delay = self.retry.delay(attempt, exc.retry_after)
            log.warning("%s; retry %d of %d in %.2f s", exc.reason, attempt, self.retry.attempts - 1, delay)
            await asyncio.sleep(delay)
            if exc.status == 429 and len(batch) > 1:  # Realtime: "please reduce the batch size"
                middle = len(batch) // 2
                await self._deliver(batch[:middle], attempt + 1)
                return await self._deliver(batch[middle:], attempt + 1)
            return await self._deliver(batch, attempt + 1)
        except SupabasePushError as exc:
            return self._settle(batch, exc)
        except Exception as exc:  # a backend bug must fail these messages, not kill the dispatcher
            log.exception("the %s backend failed unexpectedly", self.backend.name)
            return self._settle(batch, DeliveryError(f"the {self.backend.name} backend failed: {exc!r}"))
        self._settle(batch, None)

    def _settle(self, batch: list[_Pending], error: BaseException | None) -> None:
        for pending in batch:
            if not pending.future.done():
                if error is None:
                    pending.future.set_result(None)
                else:
                    pending.future.set_exception(error)
        if error is None:
            self.stats.sent += len(batch)
        else:
            self.stats.failed += len(batch)

    def _abandon_pending(self) -> int:
        left = list(self._in_flight) + ([self._carry] if self._carry else [])
        self._in_flight, self._carry = [], None
        while self._queue is not None and not self._queue.empty():
            left.append(self._queue.get_nowait())
            self._queue.task_done()
        waiting = [p for p in left if not p.future.done()]
        self._settle(waiting, BroadcasterClosedError("the broadcaster was closed before this message was delivered"))
        return len(waiting)


def _gave_up(exc: TransientError, attempts: int, count: int, what: str = "broadcast(s) not delivered") -> DeliveryError:
    text = f"{count} {what} after {attempts} attempt(s): {exc.reason}"
    hint = "the server kept failing or was unreachable; messages were not sent"
    if exc.timeout:
        return DeliveryTimeout(text, hint=hint, status=exc.status)
    return DeliveryError(text, hint=hint, status=exc.status)


def _log_failure(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and (error := future.exception()) is not None:
        log.error("broadcast failed: %s", error)
