"""Broadcast helpers for backend services: one line to push an update, async or sync.

::

    from supabase_push import broadcast_position_update
    await broadcast_position_update(position_id=1, position_data={"symbol": "SPY", "current_price": 13.5})

Sync twins live in :mod:`supabase_push.sync`. For control over the backend, batching and
retries, build a :class:`Broadcaster`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import exports

if TYPE_CHECKING:
    from .backends import Backend, TransientError, backend_from_settings
    from .broadcaster import Broadcaster, BroadcastStats, RetryPolicy
    from .default import (
        broadcast,
        broadcast_portfolio_update,
        broadcast_position_update,
        broadcast_trade_executed,
        close_default_broadcaster,
        default_broadcaster,
    )
    from .memory import MemoryBackend, NullBackend
    from .message import Message, encode_payload, jsonable
    from .notify import NotifyBackend
    from .publishers import Publisher, RestPublisher, SqlPublisher, apublish, publish, publisher_from_settings
    from .rest import RestBackend
    from .websocket import WebsocketBackend

__getattr__, __dir__ = exports(__name__, {
    ".backends": ["Backend", "TransientError", "backend_from_settings"],
    ".broadcaster": ["Broadcaster", "BroadcastStats", "RetryPolicy"],
    ".default": [
        "broadcast",
        "broadcast_portfolio_update",
        "broadcast_position_update",
        "broadcast_trade_executed",
        "close_default_broadcaster",
        "default_broadcaster",
    ],
    ".memory": ["MemoryBackend", "NullBackend"],
    ".message": ["Message", "encode_payload", "jsonable"],
    ".notify": ["NotifyBackend"],
    ".publishers": ["Publisher", "RestPublisher", "SqlPublisher", "apublish", "publish", "publisher_from_settings"],
    ".rest": ["RestBackend"],
    ".websocket": ["WebsocketBackend"],
})

__all__ = [
    "Backend",
    "BroadcastStats",
    "Broadcaster",
    "MemoryBackend",
    "Message",
    "NotifyBackend",
    "NullBackend",
    "Publisher",
    "RestBackend",
    "RestPublisher",
    "RetryPolicy",
    "SqlPublisher",
    "TransientError",
    "WebsocketBackend",
    "apublish",
    "backend_from_settings",
    "broadcast",
    "broadcast_portfolio_update",
    "broadcast_position_update",
    "broadcast_trade_executed",
    "close_default_broadcaster",
    "default_broadcaster",
    "encode_payload",
    "jsonable",
    "publish",
    "publisher_from_settings",
]
