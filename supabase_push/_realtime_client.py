"""The official ``realtime`` client, behind the few calls supabase-push makes of it.

This is the one module that imports ``realtime``. We accept ``realtime>=2.20,<3``
(pyproject.toml): upstream has merged a rewrite (async iterators instead of callbacks) that
is not released yet; when it is, supporting it is a change to this module alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from realtime import AsyncRealtimeChannel, AsyncRealtimeClient, RealtimeSubscribeStates
from realtime.types import RealtimeAcknowledgementStatus

__all__ = ["Channel", "Client", "OnState", "State", "broadcast", "channel_options", "client", "join"]

Client = AsyncRealtimeClient
Channel = AsyncRealtimeChannel
State = RealtimeSubscribeStates
OnState = Callable[[State, Exception | None], None]
"""Called with each state a channel reaches (SUBSCRIBED, CHANNEL_ERROR, TIMED_OUT, CLOSED)."""


def client(url: str, key: str, *, timeout: int, reconnect: bool, max_retries: int = 5,
           initial_backoff: float = 1.0) -> Client:
    """A client for ``wss://<project>/realtime/v1`` (not connected yet). ``timeout`` in whole seconds."""
    return AsyncRealtimeClient(url, token=key, auto_reconnect=reconnect, max_retries=max_retries,
                               initial_backoff=initial_backoff, timeout=timeout)


def channel_options(*, private: bool, ack: bool, presence: bool = True) -> Any:
    """Join options: broadcasts (acknowledged or not, never our own), private or public, presence or not."""
    config: dict[str, Any] = {"broadcast": {"ack": ack, "self": False}, "private": private}
    if not presence:
        config["presence"] = None
    return {"config": config}


async def join(socket: Client, topic: str, options: Any, on_state: OnState,
               on_broadcast: Callable[[Any], None] | None = None) -> Channel:
    """Join ``topic``; ``on_broadcast`` gets every broadcast message (``{"event", "payload", ...}``).
    Returns when the server replied or the join timed out: check ``channel.is_joined``."""
    channel = socket.channel(topic, options)
    if on_broadcast is not None:
        channel.on_broadcast("*", on_broadcast)
    await channel.subscribe(on_state)
    return channel


async def broadcast(channel: Channel, event: str, payload: Any, timeout: int, *, ok: Callable[[Any], None],
                    refused: Callable[[Any], None] | None = None, timed_out: Callable[[], None] | None = None) -> None:
    """Send one broadcast on a joined channel; the callbacks say how the server answered (with ack on)."""
    push = await channel.push("broadcast", {"type": "broadcast", "event": event, "payload": payload}, timeout)
    push.receive(RealtimeAcknowledgementStatus.Ok, ok)
    if refused is not None:
        push.receive(RealtimeAcknowledgementStatus.Error, refused)
    if timed_out is not None:
        push.receive(RealtimeAcknowledgementStatus.Timeout, timed_out)
