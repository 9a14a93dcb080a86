"""The interface every broadcast backend implements, and the error that asks for a retry."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from .message import Message

__all__ = ["Backend", "TransientError"]


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
