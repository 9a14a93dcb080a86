"""Sync twins of the broadcast and subscribe API, for Flask, Django, scripts and other non-async code.

They block until the message is accepted (or the next event arrives), and work both outside
any event loop and from sync code called inside a running one: the work runs on a separate
event loop thread.

::

    from supabase_push.sync import SyncSubscriber, broadcast_position_update
    broadcast_position_update(position_id=1, position_data={"symbol": "SPY", "current_price": 13.5})

    with SyncSubscriber.from_env(topics=["trade-updates"]) as sub:
        for event in sub:
            print(event.op, event.record)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import Any

from pydantic import BaseModel

from . import models
from ._portal import Portal
from .broadcast.backends import Backend
from .broadcast.broadcaster import Broadcaster, BroadcastStats
from .broadcast.default import close_default_broadcaster, on_default_sync
from .errors import BroadcastError
from .events import ChangeEvent, Cursor
from .subscribe import Subscriber, SubscriberStats

__all__ = [
    "SyncBroadcaster",
    "SyncSubscriber",
    "broadcast",
    "broadcast_portfolio_update",
    "broadcast_position_update",
    "broadcast_trade_executed",
    "close_default_broadcaster",
]


def broadcast(topic: str, event: str, payload: Mapping[str, Any] | BaseModel, *, private: bool | None = None) -> None:
    """Send one message through the shared broadcaster; returns once it is accepted."""
    on_default_sync(lambda b: b.broadcast(topic, event, payload, private=private))


def broadcast_position_update(position_id: int | str, position_data: Mapping[str, Any] | models.PositionUpdate, *,
                              private: bool | None = None) -> None:
    on_default_sync(lambda b: b.broadcast_position_update(position_id, position_data, private=private))


def broadcast_trade_executed(trade_id: int | str, trade_data: Mapping[str, Any] | models.TradeExecuted, *,
                             private: bool | None = None) -> None:
    on_default_sync(lambda b: b.broadcast_trade_executed(trade_id, trade_data, private=private))


def broadcast_portfolio_update(account_id: str, portfolio_data: Mapping[str, Any] | models.PortfolioUpdate, *,
                               private: bool | None = None) -> None:
    on_default_sync(lambda b: b.broadcast_portfolio_update(account_id, portfolio_data, private=private))


class SyncBroadcaster:
    """A :class:`~supabase_push.broadcast.Broadcaster` for sync code: ``with SyncBroadcaster.from_env() as b:``."""

    def __init__(self, broadcaster: Broadcaster) -> None:
        self.broadcaster = broadcaster
        self._portal = Portal("supabase-push-sync-broadcaster")

    @classmethod
    def from_env(cls, *, required: bool = True, **options: Any) -> SyncBroadcaster:
        return cls(Broadcaster.from_env(required=required, **options))

    @classmethod
    def from_supabase(cls, client: Any, **options: Any) -> SyncBroadcaster:
        """A supabase-py client's URL, key and session: see :meth:`Broadcaster.from_supabase`."""
        return cls(Broadcaster.from_supabase(client, **options))

    @classmethod
    def with_backend(cls, backend: Backend, **options: Any) -> SyncBroadcaster:
        return cls(Broadcaster(backend, **options))

    @property
    def stats(self) -> BroadcastStats:
        return self.broadcaster.stats

    def broadcast(self, topic: str, event: str, payload: Mapping[str, Any] | BaseModel, *,
                  private: bool | None = None) -> None:
        self._portal.call(self.broadcaster.broadcast(topic, event, payload, private=private))

    def publish(self, topic: str, event: str, payload: Mapping[str, Any] | BaseModel, *,
                key: str | None = None) -> int:
        """A durable event: see :meth:`Broadcaster.publish` (in your own transaction: :func:`supabase_push.publish`)."""
        return self._portal.call(self.broadcaster.publish(topic, event, payload, key=key))

    def broadcast_position_update(self, position_id: int | str,
                                  position_data: Mapping[str, Any] | models.PositionUpdate, *,
                                  private: bool | None = None) -> None:
        self._portal.call(self.broadcaster.broadcast_position_update(position_id, position_data, private=private))

    def broadcast_trade_executed(self, trade_id: int | str, trade_data: Mapping[str, Any] | models.TradeExecuted, *,
                                 private: bool | None = None) -> None:
        self._portal.call(self.broadcaster.broadcast_trade_executed(trade_id, trade_data, private=private))

    def broadcast_portfolio_update(self, account_id: str,
                                   portfolio_data: Mapping[str, Any] | models.PortfolioUpdate, *,
                                   private: bool | None = None) -> None:
        self._portal.call(self.broadcaster.broadcast_portfolio_update(account_id, portfolio_data, private=private))

    def start(self) -> SyncBroadcaster:
        self._portal.call(self.broadcaster.start())
        return self

    def flush(self) -> None:
        self._portal.call(self.broadcaster.flush())

    def close(self) -> None:
        """Deliver what is queued, then stop; raises BroadcasterClosedError if some could not be."""
        try:
            self._portal.call(self.broadcaster.close())
        finally:
            self._portal.close()

    def __enter__(self) -> SyncBroadcaster:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is None:
            self.close()
        else:
            with contextlib.suppress(BroadcastError):  # already logged; the original exception matters more
                self.close()


class SyncSubscriber:
    """A :class:`~supabase_push.subscribe.Subscriber` for sync code.

    ``with SyncSubscriber.from_env(topics=[...]) as sub: for event in sub: ...``, or
    ``sub.on(topic, callback)`` then ``sub.run()`` (until Ctrl-C). Callbacks run on the
    subscriber's own thread, one at a time, in order.
    """

    def __init__(self, subscriber: Subscriber) -> None:
        self.subscriber = subscriber
        self._portal = Portal("supabase-push-sync-subscriber")

    @classmethod
    def from_env(cls, **options: Any) -> SyncSubscriber:
        """The same arguments as :meth:`Subscriber.from_env`."""
        return cls(Subscriber.from_env(**options))

    @classmethod
    def from_supabase(cls, client: Any, **options: Any) -> SyncSubscriber:
        """A supabase-py client's URL, key and session: see :meth:`Subscriber.from_supabase`."""
        return cls(Subscriber.from_supabase(client, **options))

    @property
    def stats(self) -> SubscriberStats:
        return self.subscriber.stats

    @property
    def cursor(self) -> Cursor:
        """The last change delivered (:attr:`Subscriber.cursor`)."""
        return self.subscriber.cursor

    @property
    def acknowledged(self) -> Cursor:
        """The last change acknowledged (:attr:`Subscriber.acknowledged`)."""
        return self.subscriber.acknowledged

    def ack(self, cursor: Cursor | str) -> None:
        """:meth:`Subscriber.ack` (with ``auto_ack=False``), run on the subscriber's own thread."""
        async def ack() -> None:
            self.subscriber.ack(cursor)

        self._portal.call(ack())

    def on(self, topic: str | None, callback: Callable[[ChangeEvent], Any]) -> SyncSubscriber:
        self.subscriber.on(topic, callback)
        return self

    def start(self) -> SyncSubscriber:
        self._portal.call(self.subscriber.start())
        return self

    def wait_ready(self, timeout: float | None = None) -> None:
        self._portal.call(asyncio.wait_for(self.subscriber.wait_ready(), timeout))

    def get(self, timeout: float | None = None) -> ChangeEvent | None:
        """The next event, or None if none came within ``timeout`` seconds (or the subscriber stopped)."""
        async def next_event() -> ChangeEvent | None:
            try:
                return await asyncio.wait_for(anext(self.subscriber), timeout)
            except (StopAsyncIteration, TimeoutError):
                return None

        return self._portal.call(next_event())

    def __iter__(self) -> Iterator[ChangeEvent]:
        while (event := self.get()) is not None:
            yield event

    def run(self) -> None:
        """Deliver to the ``on()`` callbacks until interrupted."""
        self._portal.call(self.subscriber.run())

    def close(self, *, finished: bool = True) -> None:
        try:
            self._portal.call(self.subscriber.close(finished=finished))
        finally:
            self._portal.close()

    def __enter__(self) -> SyncSubscriber:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close(finished=exc is None)
