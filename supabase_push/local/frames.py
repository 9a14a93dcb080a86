"""Phoenix channel frames as Supabase Realtime speaks them, without I/O.

vsn 1.0.0: JSON objects ``{topic, event, payload, ref, join_ref?}``; the server never sends
``join_ref``. vsn 2.0.0: JSON arrays ``[join_ref, ref, topic, event, payload]``, plus binary
user-broadcast frames (kind 3 from clients, kind 4 to clients) whose lengths are single bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .. import _json

VSN1 = "1.0.0"
VSN2 = "2.0.0"
VERSIONS = (VSN1, VSN2)

USER_BROADCAST_PUSH = 3  # client -> server
USER_BROADCAST = 4  # server -> client
ENCODING_BINARY = 0
ENCODING_JSON = 1


class FrameError(ValueError):
    """A frame that is not a Phoenix message; the server logs it and drops it."""


@dataclass(frozen=True, slots=True)
class Frame:
    topic: str
    event: str
    payload: Any
    ref: str | None = None
    join_ref: str | None = None


class RawJSON(str):
    """Text that is already JSON: encoded once, embedded as is in every frame that carries it."""

    __slots__ = ()


def dumps(value: Any) -> str:
    return value if isinstance(value, RawJSON) else json.dumps(value, separators=(",", ":"))


def decode_text(vsn: str, text: str | bytes) -> Frame:
    try:
        data = _json.loads(text)
    except ValueError as exc:
        raise FrameError(f"not JSON: {exc}") from None
    if vsn == VSN2:
        if not isinstance(data, list) or len(data) != 5:
            raise FrameError("vsn 2.0.0 text frames are [join_ref, ref, topic, event, payload]")
        join_ref, ref, topic, event, payload = data
    else:
        if not isinstance(data, dict) or not {"topic", "event", "payload", "ref"} <= data.keys():
            raise FrameError("vsn 1.0.0 frames are objects with topic, event, payload and ref")
        join_ref, ref = data.get("join_ref"), data["ref"]
        topic, event, payload = data["topic"], data["event"], data["payload"]
    if not isinstance(topic, str) or not isinstance(event, str):
        raise FrameError("topic and event must be strings")
    if not all(r is None or isinstance(r, str) for r in (join_ref, ref)):
        raise FrameError("ref and join_ref must be strings or null")
    return Frame(topic, event, payload, ref, join_ref)


def decode_binary(data: bytes) -> Frame:
    """A kind-3 user broadcast push: becomes event ``broadcast`` with a ``{type, event, payload}``
    payload; a JSON-encoded body is parsed, a raw one stays ``bytes``."""
    if len(data) < 7 or data[0] != USER_BROADCAST_PUSH:
        raise FrameError("binary frames from clients must be user broadcast pushes (kind 3)")
    lengths = data[1:6]
    encoding = data[6]
    offset = 7
    fields: list[str] = []
    try:
        for length in lengths:
            fields.append(data[offset:offset + length].decode())
            offset += length
    except UnicodeDecodeError:
        raise FrameError("binary frame header fields must be UTF-8") from None
    if offset > len(data):
        raise FrameError("binary frame shorter than its header says")
    join_ref, ref, topic, user_event, _metadata = fields
    body = data[offset:]
    payload: Any = body
    if encoding == ENCODING_JSON:
        try:
            payload = _json.loads(body)
        except ValueError:
            raise FrameError("binary frame says JSON but its payload is not") from None
    elif encoding != ENCODING_BINARY:
        raise FrameError(f"unknown payload encoding {encoding}")
    return Frame(topic, "broadcast", {"type": "broadcast", "event": user_event, "payload": payload},
                   ref or None, join_ref or None)


def encode(vsn: str, msg: Frame) -> str:
    """A server frame. vsn 1 leaves ``join_ref`` out, as Phoenix's V1 serializer does."""
    topic, event, payload = json.dumps(msg.topic), json.dumps(msg.event), dumps(msg.payload)
    ref = json.dumps(msg.ref)
    if vsn == VSN2:
        return f"[{json.dumps(msg.join_ref)},{ref},{topic},{event},{payload}]"
    return f'{{"topic":{topic},"event":{event},"payload":{payload},"ref":{ref}}}'


def encode_user_broadcast(topic: str, event: str, payload: bytes, meta: dict[str, Any] | None = None) -> bytes:
    """A kind-4 frame carrying a raw binary broadcast payload to a vsn 2.0.0 client."""
    parts = [topic.encode(), event.encode(), json.dumps(meta).encode() if meta else b""]
    if any(len(p) > 255 for p in parts):
        raise FrameError("topic, event and metadata must each fit in 255 bytes")
    header = bytes([USER_BROADCAST, *(len(p) for p in parts), ENCODING_BINARY])
    return header + b"".join(parts) + payload


def reply(msg: Frame, status: str, response: Any) -> Frame:
    return Frame(msg.topic, "phx_reply", {"status": status, "response": response}, msg.ref, msg.join_ref)
