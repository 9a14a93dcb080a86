"""supabase-push: push position, trade and portfolio changes to the programs that watch them."""

from __future__ import annotations

from .broadcast import (
    Broadcaster,
    MemoryBackend,
    apublish,
    broadcast,
    broadcast_portfolio_update,
    broadcast_position_update,
    broadcast_trade_executed,
    close_default_broadcaster,
    publish,
)
from .config import Settings
from .errors import (
    AccessRefusedError,
    AuthenticationError,
    BroadcasterClosedError,
    BroadcastError,
    ConfigError,
    ConnectError,
    DatabaseError,
    DeliveryError,
    DeliveryTimeout,
    DuplicateKeyError,
    EmbeddedPostgresError,
    MissingTableError,
    PayloadError,
    PayloadTooLargeError,
    PermissionDeniedError,
    SchemaError,
    SupabasePushError,
    TransportError,
)
from .events import DEFAULT_ROUTES, ChangeEvent, Cursor
from .models import PortfolioUpdate, PositionUpdate, TradeExecuted
from .subscribe import CursorStore, FileCursorStore, Subscriber, SubscriberStats

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_ROUTES",
    "AccessRefusedError",
    "AuthenticationError",
    "BroadcastError",
    "Broadcaster",
    "BroadcasterClosedError",
    "ChangeEvent",
    "ConfigError",
    "ConnectError",
    "Cursor",
    "CursorStore",
    "DatabaseError",
    "DeliveryError",
    "DeliveryTimeout",
    "DuplicateKeyError",
    "EmbeddedPostgresError",
    "FileCursorStore",
    "MemoryBackend",
    "MissingTableError",
    "PayloadError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "PortfolioUpdate",
    "PositionUpdate",
    "SchemaError",
    "Settings",
    "Subscriber",
    "SubscriberStats",
    "SupabasePushError",
    "TradeExecuted",
    "TransportError",
    "__version__",
    "apublish",
    "broadcast",
    "broadcast_portfolio_update",
    "broadcast_position_update",
    "broadcast_trade_executed",
    "close_default_broadcaster",
    "publish",
]
