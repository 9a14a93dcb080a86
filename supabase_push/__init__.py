"""supabase-push: push position, trade and portfolio changes to the programs that watch them."""

from __future__ import annotations

from .errors import (
    AuthenticationError,
    ConfigError,
    ConnectError,
    DatabaseError,
    EmbeddedPostgresError,
    MissingTableError,
    PermissionDeniedError,
    SchemaError,
    SupabasePushError,
)
from .events import DEFAULT_ROUTES, ChangeEvent, Cursor

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_ROUTES",
    "AuthenticationError",
    "ChangeEvent",
    "ConfigError",
    "ConnectError",
    "Cursor",
    "DatabaseError",
    "EmbeddedPostgresError",
    "MissingTableError",
    "PermissionDeniedError",
    "SchemaError",
    "SupabasePushError",
    "__version__",
]
