"""The interface every broadcast backend implements, the error that asks for a retry, and the factory that
picks a backend from settings (importing only the one it builds: the websocket backend brings the official
Realtime client, the REST one httpx, NOTIFY psycopg)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ..config import Settings
from ..errors import ConfigError
from .message import Message

__all__ = ["UNCONFIGURED", "Backend", "TransientError", "backend_from_settings"]

UNCONFIGURED = ("no broadcast backend is configured: looked for SUPABASE_URL with SUPABASE_SERVICE_ROLE_KEY "
                "(or SUPABASE_SERVICE_KEY, or SUPABASE_ANON_KEY), then DATABASE_URL")


class TransientError(Exception):
    """A failure worth retrying: HTTP 429 or 5xx, a timeout, a dropped connection.

    ``retry_after`` is the server's requested wait in seconds, when it gave one;
    ``accepted`` how many messages at the head of the batch were delivered anyway
    (only those after them are retried).
    """

    def __init__(self, reason: str, *, status: int | None = None, retry_after: float | None = None,
                 timeout: bool = False, accepted: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after
        self.timeout = timeout
        self.accepted = accepted


class Backend(Protocol):
    """Delivers batches of messages. ``send`` returns once the server has accepted them all.

    It raises :class:`TransientError` when a retry may succeed, and
    :class:`~supabase_push.errors.DeliveryError` when it cannot.
    """

    name: str
    max_batch: int
    """Most messages one ``send`` call takes."""
    max_payload_bytes: int | None
    """The transport's own payload limit, if it has one below the configured limit."""
    max_payload_reason: str | None
    """Where that limit comes from and what to do instead (no setting raises it)."""

    def describe(self) -> str:
        """Where messages go, for logs: never a key."""
        ...

    async def connect(self) -> None: ...

    async def send(self, batch: Sequence[Message]) -> None: ...

    async def close(self) -> None: ...


def backend_from_settings(settings: Settings, *, required: bool = True, timeout: float = 5.0) -> Backend:
    """The backend ``settings`` ask for; ``auto`` prefers Supabase REST, then NOTIFY."""
    choice = settings.broadcast_backend
    from .memory import MemoryBackend, NullBackend

    if choice == "off":
        return NullBackend("SUPABASE_PUSH_BROADCAST=off")
    if choice == "memory":
        return MemoryBackend()
    key = settings.api_key
    if choice in ("rest", "websocket") or (choice == "auto" and settings.supabase_url and key):
        if not (settings.supabase_url and key):
            raise ConfigError(f"SUPABASE_PUSH_BROADCAST={choice} needs SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY "
                              "(or SUPABASE_SERVICE_KEY, or SUPABASE_ANON_KEY)")
        if choice == "websocket":
            from .websocket import WebsocketBackend

            return WebsocketBackend(settings.supabase_url, key, timeout=timeout)
        from .rest import RestBackend

        return RestBackend(settings.supabase_url, key, timeout=timeout)
    if choice == "notify" or (choice == "auto" and settings.database_url):
        if not settings.database_url:
            raise ConfigError("SUPABASE_PUSH_BROADCAST=notify needs DATABASE_URL")
        from .notify import NotifyBackend

        return NotifyBackend(settings.database_url, timeout=timeout)
    if required:
        raise ConfigError(UNCONFIGURED, hint="set those variables, or SUPABASE_PUSH_BROADCAST=off to run without "
                                             "broadcasts (Broadcaster.from_env(required=False) does the same)")
    return NullBackend(UNCONFIGURED)
