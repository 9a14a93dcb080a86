"""The process-wide broadcaster behind the one-line helpers, built from the environment.

It lives on its own event loop thread (a :class:`~supabase_push._portal.Portal`), so the
async helpers work from any event loop, the sync twins from any thread, and both share
one pooled connection. It is closed, after delivering what is queued, at interpreter exit
or by :func:`close_default_broadcaster`.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported on first use: `import supabase_push` binds `broadcast` from here
    from pydantic import BaseModel

    from .. import models
    from .._portal import Portal
    from .broadcaster import Broadcaster

__all__ = [
    "broadcast",
    "broadcast_portfolio_update",
    "broadcast_position_update",
    "broadcast_trade_executed",
    "close_default_broadcaster",
    "default_broadcaster",
]

@dataclass(frozen=True)
class _Default:
    portal: Portal
    broadcaster: Broadcaster


_lock = threading.Lock()
_default: _Default | None = None
_atexit_registered = False


def _get() -> _Default:
    global _default, _atexit_registered
    with _lock:
        if _default is None:
            from .._portal import Portal
            from .broadcaster import Broadcaster

            broadcaster = Broadcaster.from_env()  # a ConfigError here names the variables to set
            _default = _Default(Portal("supabase-push-broadcast"), broadcaster)
            if not _atexit_registered:
                atexit.register(close_default_broadcaster)
                _atexit_registered = True
        return _default


def default_broadcaster() -> Broadcaster:
    """The shared broadcaster (built from the environment on first use). It runs on its own thread."""
    return _get().broadcaster


def close_default_broadcaster() -> None:
    """Deliver what the shared broadcaster has queued and close it; the next helper call builds a new one.

    Call it from sync code, or through ``asyncio.to_thread`` from async code.
    """
    global _default
    with _lock:
        current, _default = _default, None
    if current is not None:
        try:
            current.portal.call(current.broadcaster.close())
        finally:
            current.portal.close()


def on_default_sync(call: Callable[[Broadcaster], Coroutine[Any, Any, None]]) -> None:
    """Run ``call(shared broadcaster)`` on its thread and block until it is done (the sync twins)."""
    current = _get()
    current.portal.call(call(current.broadcaster))


async def on_default(call: Callable[[Broadcaster], Coroutine[Any, Any, None]]) -> None:
    current = _get()
    await current.portal.acall(call(current.broadcaster))


async def broadcast(topic: str, event: str, payload: Mapping[str, Any] | BaseModel, *,
                    private: bool | None = None) -> None:
    """Send one message on ``topic`` through the shared broadcaster; returns once it is accepted."""
    await on_default(lambda b: b.broadcast(topic, event, payload, private=private))


async def broadcast_position_update(position_id: int | str,
                                    position_data: Mapping[str, Any] | models.PositionUpdate, *,
                                    private: bool | None = None) -> None:
    """``await broadcast_position_update(position_id=1, position_data={"symbol": ..., "current_price": ...})``"""
    await on_default(lambda b: b.broadcast_position_update(position_id, position_data, private=private))


async def broadcast_trade_executed(trade_id: int | str, trade_data: Mapping[str, Any] | models.TradeExecuted, *,
                                   private: bool | None = None) -> None:
    """``await broadcast_trade_executed(trade_id=7, trade_data={"symbol": ..., "side": "buy", ...})``"""
    await on_default(lambda b: b.broadcast_trade_executed(trade_id, trade_data, private=private))


async def broadcast_portfolio_update(account_id: str,
                                     portfolio_data: Mapping[str, Any] | models.PortfolioUpdate, *,
                                     private: bool | None = None) -> None:
    """``await broadcast_portfolio_update(account_id="main", portfolio_data={"total_value": ...})``"""
    await on_default(lambda b: b.broadcast_portfolio_update(account_id, portfolio_data, private=private))
