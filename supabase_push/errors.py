"""The exceptions supabase-push raises. Callers never need psycopg's or httpx's.

::

    SupabasePushError             every error below; .hint says what to do about it
    ├── ConfigError               a setting is missing or malformed (no database URL, bad route)
    ├── DatabaseError             talking to Postgres failed
    │   ├── ConnectError          the server cannot be reached (refused, unknown host, timeout)
    │   ├── AuthenticationError   the server refused the credentials
    │   ├── PermissionDeniedError the role lacks a privilege the operation needs
    │   └── MissingTableError     a routed table does not exist
    ├── SchemaError               installed objects are missing or were changed by hand
    └── EmbeddedPostgresError     a throwaway local cluster could not be started
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "ConfigError",
    "ConnectError",
    "DatabaseError",
    "EmbeddedPostgresError",
    "MissingTableError",
    "PermissionDeniedError",
    "SchemaError",
    "SupabasePushError",
]


class SupabasePushError(Exception):
    """Base class of every supabase-push error."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


class ConfigError(SupabasePushError):
    """A setting is missing or malformed."""


class DatabaseError(SupabasePushError):
    """Talking to Postgres failed."""


class ConnectError(DatabaseError):
    """The database server cannot be reached."""


class AuthenticationError(DatabaseError):
    """The database server refused the credentials."""


class PermissionDeniedError(DatabaseError):
    """The database role lacks a privilege the operation needs."""


class MissingTableError(DatabaseError):
    """A table named in the routes does not exist."""


class SchemaError(SupabasePushError):
    """Installed objects are missing or were changed by hand."""


class EmbeddedPostgresError(SupabasePushError):
    """A throwaway local Postgres cluster could not be started."""
