"""Joined channels, who receives what, and presence: in memory, without I/O.

A :class:`ChannelRegistry` indexes channels by stream (a private and a public channel of the same name
are separate streams, as on Supabase) and by the tables their postgres_changes bindings
name, so each message is encoded once per protocol version and queued to each receiver.
"""

from __future__ import annotations

import json
import secrets
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import change_filters
from .frames import VERSIONS, Frame, encode

Stream = tuple[bool, str]  # (private, sub-topic)
CHANGE_EVENTS = ("*", "INSERT", "UPDATE", "DELETE")


class Receiver(Protocol):
    vsn: str

    def deliver(self, frame: str | bytes) -> None: ...


def binding_id(params: dict[str, Any]) -> int:
    """Identical parameters give the identical id, so ids survive rejoins (as Erlang phash2 does)."""
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return zlib.crc32(canonical.encode()) & 0x7FFFFFF


REFS = ("phx_ref", "phx_ref_prev")  # what the server adds to a tracked meta


@dataclass(frozen=True, slots=True)
class Binding:
    """One postgres_changes listener of a channel, with the id its join reply gave it."""

    id: int
    event: str
    schema: str
    table: str
    filter: change_filters.Filter | None
    params: dict[str, Any]  # as the client sent it, echoed in the join reply

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Binding:
        """Raises ValueError (bad event) or FilterError (bad filter)."""
        event = str(params.get("event", "*"))
        if event.upper() not in CHANGE_EVENTS:
            raise ValueError(f"event must be one of {', '.join(CHANGE_EVENTS)}, not {event!r}")
        schema = params.get("schema") or "public"
        table = params.get("table") or "*"
        return cls(binding_id(params), event.upper(), str(schema), str(table),
                   change_filters.parse(params.get("filter")), params)

    def covers(self, schema: str, table: str) -> bool:
        return self.schema in ("*", schema) and self.table in ("*", table)


@dataclass(eq=False, slots=True)
class Channel:
    receiver: Receiver
    topic: str  # realtime:<sub-topic>
    join_ref: str | None
    private: bool
    claims: dict[str, Any]
    broadcast_self: bool = False
    broadcast_ack: bool = False
    presence_key: str = ""
    presence_enabled: bool = False
    bindings: list[Binding] = field(default_factory=list)
    can_write: bool | None = None  # private channels: the write policy, checked once
    can_read_broadcast: bool = True  # private channels: False when only a presence read policy let it join
    tracked: dict[str, Any] | None = None  # this channel's presence meta, phx_ref included

    @property
    def sub_topic(self) -> str:
        return self.topic.removeprefix("realtime:")

    @property
    def stream(self) -> Stream:
        return (self.private, self.sub_topic)


class ChannelRegistry:
    def __init__(self) -> None:
        self._streams: dict[Stream, set[Channel]] = defaultdict(set)
        self._listeners: set[Channel] = set()  # channels with postgres_changes bindings

    def add(self, channel: Channel) -> None:
        self._streams[channel.stream].add(channel)
        if channel.bindings:
            self._listeners.add(channel)

    def remove(self, channel: Channel) -> None:
        members = self._streams.get(channel.stream)
        if members is not None:
            members.discard(channel)
            if not members:
                del self._streams[channel.stream]
        self._listeners.discard(channel)
        if channel.tracked is not None:
            self.untrack(channel)

    def members(self, stream: Stream) -> set[Channel]:
        return self._streams.get(stream, set())

    # -- broadcast ------------------------------------------------------------------------

    def broadcast(self, stream: Stream, payload: Any, *, exclude: Channel | None = None) -> int:
        """Queue a broadcast to every channel of a stream; returns how many got it."""
        topic = "realtime:" + stream[1]
        frames = Frames(Frame(topic, "broadcast", payload))
        count = 0
        for channel in self.members(stream):
            if channel is not exclude and channel.can_read_broadcast:
                channel.receiver.deliver(frames.get(channel.receiver.vsn))
                count += 1
        return count

    def broadcast_binary(self, stream: Stream, frame: bytes, *, exclude: Channel | None = None) -> int:
        """A raw-binary broadcast reaches vsn 2.0.0 clients only (vsn 1.0.0 has no binary frames)."""
        count = 0
        for channel in self.members(stream):
            if channel is not exclude and channel.can_read_broadcast and channel.receiver.vsn != VERSIONS[0]:
                channel.receiver.deliver(frame)
                count += 1
        return count

    # -- postgres_changes -----------------------------------------------------------------

    def listeners(self, schema: str, table: str) -> list[tuple[Channel, list[Binding]]]:
        found = []
        for channel in self._listeners:
            bindings = [b for b in channel.bindings if b.covers(schema, table)]
            if bindings:
                found.append((channel, bindings))
        return found

    # -- presence -------------------------------------------------------------------------

    def presence_state(self, stream: Stream) -> dict[str, Any]:
        state: dict[str, dict[str, list[Any]]] = {}
        for channel in self.members(stream):
            if channel.tracked is not None:
                state.setdefault(channel.presence_key, {"metas": []})["metas"].append(channel.tracked)
        return state

    def track(self, channel: Channel, meta: dict[str, Any]) -> None:
        """Track or update this channel's meta. An update names the meta it replaces in
        ``phx_ref_prev``, as Phoenix's tracker does, and the diff both joins and leaves it."""
        previous = channel.tracked
        if previous is not None and {k: v for k, v in previous.items() if k not in REFS} == meta:
            return  # the identical payload again: nothing changes
        channel.tracked = {**meta, "phx_ref": secrets.token_urlsafe(12)}
        if previous is not None:
            channel.tracked["phx_ref_prev"] = previous["phx_ref"]
        channel.presence_enabled = True
        leaves = {channel.presence_key: {"metas": [previous]}} if previous else {}
        self._presence_diff(channel.stream, {channel.presence_key: {"metas": [channel.tracked]}}, leaves)

    def untrack(self, channel: Channel) -> None:
        previous, channel.tracked = channel.tracked, None
        if previous is not None:
            self._presence_diff(channel.stream, {}, {channel.presence_key: {"metas": [previous]}})

    def _presence_diff(self, stream: Stream, joins: dict[str, Any], leaves: dict[str, Any]) -> None:
        frames = Frames(Frame("realtime:" + stream[1], "presence_diff", {"joins": joins, "leaves": leaves}))
        for member in self.members(stream):
            if member.presence_enabled:
                member.receiver.deliver(frames.get(member.receiver.vsn))


class Frames:
    """One message, encoded at most once per protocol version however many receive it."""

    __slots__ = ("_encoded", "_message")

    def __init__(self, message: Frame) -> None:
        self._message = message
        self._encoded: dict[str, str] = {}

    def get(self, vsn: str) -> str:
        frame = self._encoded.get(vsn)
        if frame is None:
            frame = self._encoded[vsn] = encode(vsn, self._message)
        return frame
