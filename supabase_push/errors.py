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
    ├── EmbeddedPostgresError     a throwaway local cluster could not be started
    ├── TransportError            a subscriber's push transport or change-log reader failed (it retries)
    │   └── AccessRefusedError    the server refused the credentials or the role's rights (a retry will not help)
    └── BroadcastError            a broadcast was not delivered
        ├── PayloadError          the payload is invalid or not serialisable (nothing was sent)
        │   ├── PayloadTooLargeError  it is over the size limit (nothing was sent)
        │   └── DuplicateKeyError     a published event's key names another event (nothing was published)
        ├── DeliveryError         the backend refused it or stayed unreachable through the retries
        │   └── DeliveryTimeout   the backend did not answer in time
        └── BroadcasterClosedError  the broadcaster was closed before the message could leave
"""

from __future__ import annotations

__all__ = [
    "AccessRefusedError",
    "AuthenticationError",
    "BroadcastError",
    "BroadcasterClosedError",
    "ConfigError",
    "ConnectError",
    "DatabaseError",
    "DeliveryError",
    "DeliveryTimeout",
    "DuplicateKeyError",
    "EmbeddedPostgresError",
    "MissingTableError",
    "PayloadError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "SchemaError",
    "SupabasePushError",
    "TransportError",
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


class TransportError(SupabasePushError):
    """A subscriber's push transport or change-log reader failed; the subscriber retries it."""


class AccessRefusedError(TransportError):
    """The server refused the credentials (a wrong password or key) or the role's right to read:
    retrying will not help until the configuration changes."""


class BroadcastError(SupabasePushError):
    """A broadcast was not delivered."""


class PayloadError(BroadcastError, ValueError):
    """The payload is invalid or cannot be serialised to JSON; nothing was sent."""


class PayloadTooLargeError(PayloadError):
    """The serialised payload is over the backend's size limit; nothing was sent."""


class DuplicateKeyError(PayloadError):
    """An event was published with a key that an earlier event with another topic, name or payload has;
    nothing was published (the same key with the same event is not an error: it is that event)."""


class DeliveryError(BroadcastError):
    """The backend refused the message, or stayed unreachable through every retry.

    ``status`` is the HTTP status when there was one.
    """

    def __init__(self, message: str, *, hint: str | None = None, status: int | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status


class DeliveryTimeout(DeliveryError, TimeoutError):
    """The backend did not answer within the timeout, through every retry."""


class BroadcasterClosedError(BroadcastError):
    """The broadcaster was closed before the message could be delivered."""
