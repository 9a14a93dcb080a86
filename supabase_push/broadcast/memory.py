"""Backends that send nowhere: one that records (for your tests), one that drops (broadcasts off)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from .message import Message

__all__ = ["MemoryBackend", "NullBackend"]

log = logging.getLogger("supabase_push.broadcast")


class MemoryBackend:
    """Keeps every delivered message in ``messages``, in order.

    ``await backend.wait_for(n)`` returns once ``n`` messages have arrived.
    """

    name: str = "memory"
    max_batch: int = 1000
    max_payload_bytes: int | None = None
    max_payload_reason: str | None = None

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._arrived = asyncio.Event()

    def describe(self) -> str:
        return "memory (nothing leaves the process)"

    async def connect(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def send(self, batch: Sequence[Message]) -> None:
        self.messages.extend(batch)
        self._arrived.set()

    def sent(self, topic: str | None = None, event: str | None = None) -> list[Message]:
        return [m for m in self.messages if topic in (None, m.topic) and event in (None, m.event)]

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[Message]:
        async def wait() -> None:
            while len(self.messages) < count:
                self._arrived.clear()
                await self._arrived.wait()

        await asyncio.wait_for(wait(), timeout)
        return self.messages[:count]


class NullBackend:
    """Drops every message, counting them: broadcasting is off or unconfigured."""

    name: str = "off"
    max_batch: int = 1000
    max_payload_bytes: int | None = None
    max_payload_reason: str | None = None

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.dropped = 0

    def describe(self) -> str:
        return f"nowhere: {self.reason}"

    async def connect(self) -> None:
        pass  # said at the first drop: a broadcaster that only publishes events drops nothing

    async def close(self) -> None:
        if self.dropped:
            log.warning("%d broadcast(s) were dropped: %s", self.dropped, self.reason)

    async def send(self, batch: Sequence[Message]) -> None:
        if not self.dropped:
            log.warning("broadcasts are dropped: %s", self.reason)
        self.dropped += len(batch)
