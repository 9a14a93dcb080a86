"""Broadcast over a Realtime websocket through the official ``realtime`` client.

For sustained high rates from one process: one socket, one joined channel per topic,
each message acknowledged by the server (``broadcast.ack``). The client gives up
reconnecting after a few attempts and says nothing, so every send first checks that
the socket and the channel are alive and rebuilds whatever is not.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Sequence
from typing import Any

from .. import _realtime_client as rt
from ..config import scrub
from ..errors import DeliveryError
from .backends import TransientError
from .message import Message

__all__ = ["WebsocketBackend", "realtime_url"]

log = logging.getLogger("supabase_push.broadcast")


def realtime_url(url: str) -> str:
    """``ws(s)://<project>/realtime/v1`` from a project URL."""
    base = url.rstrip("/").removesuffix("/realtime/v1")
    return base.replace("https://", "wss://", 1).replace("http://", "ws://", 1) + "/realtime/v1"


class WebsocketBackend:
    name: str = "websocket"
    max_payload_bytes: int | None = None
    max_payload_reason: str | None = None

    def __init__(self, url: str, key: str, *, timeout: float = 5.0, max_batch: int = 500) -> None:
        self.url = realtime_url(url)
        self.max_batch = max_batch
        self.timeout = timeout
        self._key = key
        self._client: rt.Client | None = None
        self._channels: dict[tuple[str, bool], rt.Channel] = {}

    def describe(self) -> str:
        return f"Supabase Realtime websocket at {self.url}"

    async def connect(self) -> None:
        await self._socket()

    async def close(self) -> None:
        client, self._client = self._client, None
        self._channels.clear()
        if client is not None:
            await client.close()

    async def send(self, batch: Sequence[Message]) -> None:
        loop = asyncio.get_running_loop()
        replies: list[asyncio.Future[None]] = []
        for message in batch:
            channel = await self._channel(message.topic, message.private)
            reply: asyncio.Future[None] = loop.create_future()
            try:
                await rt.broadcast(channel, message.event, message.payload, self._push_timeout,
                                   **self._acknowledgement(message, reply))
            except Exception as exc:  # the socket broke under the client: start over on the retry
                await self.close()
                reason = scrub(str(exc) or type(exc).__name__, [self._key])
                raise TransientError(f"lost the connection to {self.url}: {reason}") from None
            replies.append(reply)
        results = await asyncio.gather(*replies, return_exceptions=True)
        for accepted, result in enumerate(results):
            if isinstance(result, TransientError):
                result.accepted = accepted  # the acknowledged head is not sent twice
            if isinstance(result, BaseException):
                raise result

    def _acknowledgement(self, message: Message, reply: asyncio.Future[None]) -> dict[str, Any]:
        def ok(_: Any) -> None:
            _settle(reply, None)

        def refused(response: Any) -> None:
            _settle(reply, DeliveryError(
                f"Realtime refused the broadcast to {message.topic}/{message.event}: {json.dumps(response)}"))

        def timed_out() -> None:
            _settle(reply, TransientError(f"no acknowledgement from {self.url} within {self._push_timeout} s",
                                          timeout=True))

        return {"ok": ok, "refused": refused, "timed_out": timed_out}

    @property
    def _push_timeout(self) -> int:
        return max(1, math.ceil(self.timeout))  # the client counts whole seconds

    async def _socket(self) -> rt.Client:
        if self._client is not None and self._client.is_connected:
            return self._client
        if self._client is not None:  # the client gave up reconnecting: start over
            await self.close()
        client = rt.client(self.url, self._key, reconnect=True, max_retries=3, initial_backoff=0.2,
                           timeout=self._push_timeout)
        try:
            await client.connect()
        except Exception as exc:  # the client raises whatever websockets raised
            reason = scrub(str(exc) or type(exc).__name__, [self._key])
            raise TransientError(f"cannot connect to {self.url}: {reason}") from None
        self._client = client
        return client

    async def _channel(self, topic: str, private: bool) -> rt.Channel:
        client = await self._socket()
        channel = self._channels.get((topic, private))
        if channel is not None and (channel.is_joined or channel.is_joining):
            return channel
        if channel is not None:
            await client.remove_channel(channel)
        states: list[tuple[rt.State, Exception | None]] = []
        channel = await rt.join(client, topic, rt.channel_options(private=private, ack=True),
                                lambda state, error: states.append((state, error)))
        if not channel.is_joined:
            state, error = states[-1] if states else (rt.State.TIMED_OUT, None)
            await client.remove_channel(channel)
            reason = scrub(str(error), [self._key]) if error else state.value
            if state == rt.State.TIMED_OUT:
                raise TransientError(f"joining {topic} on {self.url} timed out", timeout=True)
            raise DeliveryError(f"Realtime refused to join {topic!r} (private={private}): {reason}",
                                hint="private topics need the service role key or an RLS write policy")
        self._channels[(topic, private)] = channel
        return channel


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
