"""One websocket client: decode its frames, run its channels, queue what it receives.

The protocol rules live here (join, leave, broadcast, presence, access_token, heartbeat);
the transport (aiohttp) only feeds :meth:`Session.handle_text` / :meth:`Session.handle_binary`
and drains :attr:`Session.outbox`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from . import change_filters, tokens
from .channels import Binding, Channel, binding_id
from .frames import Frame, FrameError, decode_binary, decode_text, encode, encode_user_broadcast, reply

if TYPE_CHECKING:
    from .channels import ChannelRegistry
    from .database import Database
    from .server_config import ServerConfig

log = logging.getLogger("supabase_push.local")

CLOSE_SLOW_CONSUMER = 1013


def cast_bool(value: Any, default: bool = False) -> bool:
    """Booleans as Realtime casts them: true/false or the strings "true"/"false"."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return default


def _object(value: Any) -> dict[str, Any]:
    """A JSON object from a client, or {} for anything else (Realtime casts what it can)."""
    return value if isinstance(value, dict) else {}


class SessionContext(Protocol):
    """What a session needs of the server: its settings, its database, the channels of every session, and
    how a token is checked (the server is one; a test may give its own)."""

    config: ServerConfig
    db: Database
    registry: ChannelRegistry

    def verify(self, token: str | None) -> dict[str, Any]: ...


class Session:
    """The Phoenix protocol rules for one websocket: joins, leaves, broadcast, presence, access tokens."""

    def __init__(self, context: SessionContext, vsn: str, claims: dict[str, Any],
                 close: Callable[[int, str], Coroutine[Any, Any, None]]) -> None:
        self.context = context
        self.vsn = vsn
        self.claims = claims
        self.channels: dict[str, Channel] = {}
        self.outbox: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self._queued_bytes = 0
        self._close = close
        self._expiry: dict[str, asyncio.TimerHandle] = {}
        self.closed = False

    # -- outbound ---------------------------------------------------------------------------

    def deliver(self, frame: str | bytes) -> None:
        if self.closed:
            return
        config = self.context.config
        if self.outbox.qsize() >= config.outbox_limit or self._queued_bytes + len(frame) > config.outbox_limit_bytes:
            log.warning("closing a client that is %d frames (%d bytes) behind", self.outbox.qsize(),
                        self._queued_bytes)
            self.closed = True
            asyncio.get_running_loop().create_task(self._close(CLOSE_SLOW_CONSUMER, "too far behind"))
            return
        self._queued_bytes += len(frame)
        self.outbox.put_nowait(frame)

    async def next_frame(self) -> str | bytes | None:
        """The next frame for the socket's writer (None: stop)."""
        frame = await self.outbox.get()
        if frame is not None:
            self._queued_bytes -= len(frame)
        return frame

    async def close_socket(self, code: int, reason: str) -> None:
        self.closed = True
        await self._close(code, reason)

    def push(self, msg: Frame) -> None:
        self.deliver(encode(self.vsn, msg))

    def system(self, channel: Channel, extension: str, status: str, message: str) -> None:
        self.push(Frame(channel.topic, "system",
                          {"extension": extension, "status": status, "message": message,
                           "channel": channel.sub_topic}, None, channel.join_ref))

    def close_channel(self, channel: Channel) -> None:
        """phx_close to the client, then forget the channel."""
        self.push(Frame(channel.topic, "phx_close", {}, channel.join_ref, channel.join_ref))
        self.drop(channel)

    def drop(self, channel: Channel) -> None:
        if self.channels.get(channel.topic) is channel:
            del self.channels[channel.topic]
        self.context.registry.remove(channel)
        timer = self._expiry.pop(channel.topic, None)
        if timer is not None:
            timer.cancel()

    def shutdown_channel(self, channel: Channel, message: str) -> None:
        """A channel-level error: a system error message, then phx_close (Realtime's shutdown)."""
        self.system(channel, "system", "error", message)
        self.close_channel(channel)

    def disconnect(self) -> None:
        self.closed = True
        for channel in list(self.channels.values()):
            self.drop(channel)
        self.outbox.put_nowait(None)

    # -- inbound ----------------------------------------------------------------------------

    async def handle_text(self, text: str) -> None:
        try:
            msg = decode_text(self.vsn, text)
        except FrameError as exc:
            log.info("dropped a malformed frame: %s", exc)  # as Realtime: log and carry on
            return
        await self.handle(msg)

    async def handle_binary(self, data: bytes) -> None:
        try:
            msg = decode_binary(data)
        except FrameError as exc:
            log.info("dropped a malformed binary frame: %s", exc)
            return
        await self.handle(msg)

    async def handle(self, msg: Frame) -> None:
        if msg.topic == "phoenix":
            if msg.event == "heartbeat":
                self.push(reply(msg, "ok", {}))
            return
        if msg.event == "phx_join":
            try:
                await self._join(msg)
            except Exception:
                log.exception("join of %s failed", msg.topic)
                self.push(reply(msg, "error", {"reason": "Unknown Error on Channel"}))
            return
        channel = self.channels.get(msg.topic)
        if channel is None:
            self.push(reply(msg, "error", {"reason": "unmatched topic"}))
            return
        if msg.join_ref is not None and msg.join_ref != channel.join_ref:
            return  # from an earlier join of this topic: Phoenix ignores it
        try:
            await self._handle_in(channel, msg)
        except Exception:
            # As when a Phoenix channel process crashes: phx_error, the channel is gone, the
            # socket and its other channels carry on (clients rejoin).
            log.exception("channel %s failed on %r", channel.topic, msg.event)
            self.push(Frame(channel.topic, "phx_error", {}, channel.join_ref, channel.join_ref))
            self.drop(channel)

    async def _handle_in(self, channel: Channel, msg: Frame) -> None:
        payload = _object(msg.payload)
        if msg.event == "broadcast":
            await self._broadcast(channel, msg, payload)
        elif msg.event == "presence":
            await self._presence(channel, msg, payload)
        elif msg.event == "access_token":
            await self._access_token(channel, payload)
        elif msg.event == "phx_leave":
            self.push(reply(msg, "ok", {}))
            self.close_channel(channel)
        else:
            log.info("unexpected message from client of type %r", msg.event)

    async def _join_error(self, msg: Frame, reason: str) -> None:
        if self.context.config.channel_error_backoff:
            await asyncio.sleep(self.context.config.channel_error_backoff)
        self.push(reply(msg, "error", {"reason": reason}))

    async def _join(self, msg: Frame) -> None:
        sub_topic = msg.topic.removeprefix("realtime:")
        if not msg.topic.startswith("realtime:") or not sub_topic:
            await self._join_error(msg, "TopicNameRequired: You must provide a topic name starting with realtime:")
            return
        previous = self.channels.get(msg.topic)
        if previous is not None:
            self.close_channel(previous)  # a duplicate join replaces the channel
        if len(self.channels) >= self.context.config.max_channels:
            await self._join_error(msg, "ChannelRateLimitReached: Too many channels")
            return
        payload = _object(msg.payload)
        config = _object(payload.get("config"))
        claims = self.claims
        token = payload.get("access_token") or payload.get("user_token")
        if isinstance(token, str) and not token.startswith("sb_"):
            try:
                claims = self.context.verify(token)
            except tokens.TokenError as exc:
                await self._join_error(msg, str(exc))
                return
        broadcast, presence = _object(config.get("broadcast")), _object(config.get("presence"))
        channel = Channel(
            receiver=self, topic=msg.topic, join_ref=msg.join_ref or msg.ref,
            private=cast_bool(config.get("private")), claims=claims,
            broadcast_self=cast_bool(broadcast.get("self")), broadcast_ack=cast_bool(broadcast.get("ack")),
            presence_key=str(presence.get("key") or "") or str(uuid.uuid4()),
            presence_enabled=cast_bool(presence.get("enabled")))
        if self.context.config.private_only and not channel.private:
            await self._join_error(msg, "PrivateOnly: This project only allows private channels")
            return
        echoed, problems = await self._bindings(channel, config.get("postgres_changes"))
        if channel.private:
            wanted = ["broadcast", "presence"] if channel.presence_enabled else ["broadcast"]
            readable = await self.context.db.can_read(claims, sub_topic, wanted)
            if not any(readable.values()):
                await self._join_error(
                    msg, f"Unauthorized: You do not have permissions to read from this Channel topic: {sub_topic}")
                return
            channel.can_read_broadcast = readable["broadcast"]  # joined for presence alone: no broadcasts
        self.channels[msg.topic] = channel
        self.context.registry.add(channel)
        self.push(reply(msg, "ok", {"postgres_changes": echoed}))
        if echoed:
            for problem in problems:
                self.system(channel, "postgres_changes", "error", problem)
            if not problems:
                self.system(channel, "postgres_changes", "ok", "Subscribed to PostgreSQL")
        if channel.presence_enabled:
            self.push(Frame(msg.topic, "presence_state", self.context.registry.presence_state(channel.stream),
                              None, channel.join_ref))
        self._watch_expiry(channel)

    async def _bindings(self, channel: Channel, raw: Any) -> tuple[list[dict[str, Any]], list[str]]:
        """The join reply's echo (client params + id, in order) and the problems to report."""
        if not isinstance(raw, list):
            return [], []
        echoed: list[dict[str, Any]] = []
        problems: list[str] = []
        published: dict[tuple[str, str], set[str]] | None = None
        for params in raw:
            if not isinstance(params, dict):
                continue  # null entries are removed, as Realtime does
            try:
                binding = Binding.from_params(params)
            except (ValueError, change_filters.FilterError) as exc:
                problems.append(str(exc))
                echoed.append({**params, "id": binding_id(params)})
                continue
            echoed.append({**params, "id": binding.id})
            if published is None:
                published = await self.context.db.published_columns()
            tables = [key for key in published if binding.covers(*key)]
            column = binding.filter.column if binding.filter else None
            if not tables or (column is not None and not any(column in published[t] for t in tables)):
                problems.append(
                    "Unable to subscribe to changes with given parameters. Please check Realtime is enabled "
                    f"for the given connect parameters: [schema: {binding.schema}, table: {binding.table}, "
                    f"filters: {[params.get('filter')] if params.get('filter') else []}]")
                continue
            channel.bindings.append(binding)
        return echoed, problems

    async def _broadcast(self, channel: Channel, msg: Frame, payload: dict[str, Any]) -> None:
        event = payload.get("event")
        body = payload.get("payload")
        if not isinstance(event, str):
            return
        if channel.private:
            if channel.can_write is None:
                channel.can_write = await self.context.db.can_write(channel.claims, channel.sub_topic)
            if not channel.can_write:
                return  # as on Supabase: dropped without a reply, even with ack
        size = len(body) if isinstance(body, bytes) else len(json.dumps(body))
        if size > self.context.config.max_payload_bytes:
            if channel.broadcast_ack:
                self.push(reply(msg, "error", {"error": "payload_size_exceeded"}))
            return
        exclude = None if channel.broadcast_self else channel
        if isinstance(body, bytes):
            frame = encode_user_broadcast(channel.topic, event, body)
            self.context.registry.broadcast_binary(channel.stream, frame, exclude=exclude)
        else:
            relayed = {**payload, "type": "broadcast"}
            self.context.registry.broadcast(channel.stream, relayed, exclude=exclude)
        if channel.broadcast_ack:
            self.push(reply(msg, "ok", {}))

    async def _presence(self, channel: Channel, msg: Frame, payload: dict[str, Any]) -> None:
        event = payload.get("event")
        if event == "track":
            meta = payload.get("payload")
            if not isinstance(meta, dict):
                self.push(reply(msg, "error", {"reason": "Presence track payload must be a map"}))
                return
            if channel.private and not await self.context.db.can_write(channel.claims, channel.sub_topic, "presence"):
                self.push(reply(msg, "error", {}))
                return
            if not channel.presence_enabled:  # joined without presence: the first track turns it on
                channel.presence_enabled = True
                self.push(Frame(msg.topic, "presence_state", self.context.registry.presence_state(channel.stream),
                                  None, channel.join_ref))
            self.context.registry.track(channel, meta)
        elif event == "untrack":
            self.context.registry.untrack(channel)
        else:
            self.push(reply(msg, "error", {"reason": "presence event must be track or untrack"}))
            return
        self.push(reply(msg, "ok", {}))

    async def _access_token(self, channel: Channel, payload: dict[str, Any]) -> None:
        token = payload.get("access_token")
        if not isinstance(token, str) or token.startswith("sb_"):
            return
        try:
            claims = self.context.verify(token)
        except tokens.TokenError as exc:
            self.shutdown_channel(channel, f"Received an invalid access token from client: {exc.message}")
            return
        if claims == channel.claims:
            return
        channel.claims = claims
        channel.can_write = None
        if channel.private:
            wanted = ["broadcast", "presence"] if channel.presence_enabled else ["broadcast"]
            readable = await self.context.db.can_read(claims, channel.sub_topic, wanted)
            if not any(readable.values()):
                self.shutdown_channel(
                    channel, f"You no longer have permission to read from this Channel topic: {channel.sub_topic}")
                return
            channel.can_read_broadcast = readable["broadcast"]
        self._watch_expiry(channel)

    def _watch_expiry(self, channel: Channel) -> None:
        """At the token's ``exp``: a system error, then phx_close (clients must refresh first)."""
        old = self._expiry.pop(channel.topic, None)
        if old is not None:
            old.cancel()
        delay = float(channel.claims.get("exp", 0)) - time.time()
        if delay > 365 * 86400:
            return

        def expire() -> None:
            if self.channels.get(channel.topic) is channel:
                self.shutdown_channel(channel, "Token has expired 0 seconds ago")

        self._expiry[channel.topic] = asyncio.get_running_loop().call_later(max(delay, 0), expire)
