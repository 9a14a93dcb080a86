"""supabase-push: push position, trade and portfolio changes to the programs that watch them.

The names below are imported from their modules on first use (``supabase_push._lazy``): importing the
package does not import the backends, the clients and the drivers behind them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import exports

# The exception tree costs nothing to import. The function ``broadcast`` is bound here, not lazily: the
# subpackage of the same name would take its place the first time it is imported.
from .broadcast.default import broadcast
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

if TYPE_CHECKING:
    from .broadcast import (
        Broadcaster,
        MemoryBackend,
        apublish,
        broadcast_portfolio_update,
        broadcast_position_update,
        broadcast_trade_executed,
        close_default_broadcaster,
        publish,
    )
    from .config import Settings
    from .events import DEFAULT_ROUTES, ChangeEvent, Cursor
    from .models import PortfolioUpdate, PositionUpdate, TradeExecuted
    from .subscribe import CursorStore, FileCursorStore, Subscriber, SubscriberStats

__version__ = "0.1.0"

__getattr__, __dir__ = exports(__name__, {
    ".broadcast": [
        "Broadcaster",
        "MemoryBackend",
        "apublish",
        "broadcast_portfolio_update",
        "broadcast_position_update",
        "broadcast_trade_executed",
        "close_default_broadcaster",
        "publish",
    ],
    ".config": ["Settings"],
    ".events": ["DEFAULT_ROUTES", "ChangeEvent", "Cursor"],
    ".models": ["PortfolioUpdate", "PositionUpdate", "TradeExecuted"],
    ".subscribe": ["CursorStore", "FileCursorStore", "Subscriber", "SubscriberStats"],
})

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
