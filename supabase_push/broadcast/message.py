"""A broadcast message, serialised and checked once, before any backend sees it."""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from ..errors import PayloadError, PayloadTooLargeError

__all__ = ["Message", "encode_payload", "jsonable"]


@dataclass(frozen=True, slots=True)
class Message:
    """One broadcast: ``payload`` is JSON-ready, ``body`` its UTF-8 JSON text."""

    topic: str
    event: str
    payload: dict[str, Any]
    body: bytes
    private: bool

    @classmethod
    def build(cls, topic: str, event: str, payload: Mapping[str, Any] | BaseModel, *, private: bool,
              max_bytes: int, limit_reason: str | None = None) -> Message:
        """``limit_reason``: the transport's own limit binds, not SUPABASE_PUSH_MAX_PAYLOAD_BYTES (why, and
        what to do)."""
        if not isinstance(topic, str) or not topic.strip():
            raise PayloadError(f"topic must be a non-empty string, got {topic!r}")
        if not isinstance(event, str) or not event.strip():
            raise PayloadError(f"event must be a non-empty string, got {event!r}")
        data, body = encode_payload(payload)
        if len(body) > max_bytes:
            raise PayloadTooLargeError(
                f"payload for {topic}/{event} is {len(body):,} bytes, over the {max_bytes:,}-byte limit"
                f"{' of the transport' if limit_reason else ''}; nothing was sent",
                hint=limit_reason or "send an id and let subscribers read the row, or raise "
                                     "SUPABASE_PUSH_MAX_PAYLOAD_BYTES up to your plan's broadcast limit")
        return cls(topic, event, data, body, private)


def encode_payload(payload: Mapping[str, Any] | BaseModel) -> tuple[dict[str, Any], bytes]:
    """The payload as JSON-ready data and as compact UTF-8 JSON; PayloadError if it cannot be."""
    if isinstance(payload, BaseModel):
        payload = payload.model_dump(exclude_none=True)
    if not isinstance(payload, Mapping):
        raise PayloadError(f"payload must be a JSON object (a dict), got {type(payload).__name__}",
                           hint='Supabase Realtime delivers only object payloads; wrap the value, e.g. {"value": ...}')
    try:
        data = jsonable(payload, "payload")
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    except RecursionError:
        raise PayloadError("payload is nested too deeply, or refers to itself") from None
    try:
        return data, text.encode()
    except UnicodeEncodeError as exc:  # a lone surrogate, e.g. from bytes decoded with surrogateescape
        raise PayloadError(f"payload has text that is not valid Unicode: {exc.reason}") from None


def jsonable(value: Any, path: str = "value") -> Any:
    """``value`` with Decimal, datetime, UUID, enum, set and pydantic models turned into JSON types.

    A Decimal becomes a number when a float holds it exactly (prices like 13.50), else a
    string, so no digit is lost. Naive datetimes are refused: their time zone is unknowable.
    """
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PayloadError(f"{path} is {value}, which JSON cannot carry", hint="send null or a string instead")
        return value
    if isinstance(value, enum.Enum):
        return jsonable(value.value, path)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise PayloadError(f"{path} is Decimal({str(value)!r}), which JSON cannot carry")
        as_float = float(value)
        return as_float if Decimal(repr(as_float)) == value else str(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise PayloadError(f"{path} is a naive datetime ({value.isoformat()})",
                               hint="give it a time zone, e.g. datetime.now(timezone.utc)")
        return value.isoformat()
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, BaseModel):
        return jsonable(value.model_dump(exclude_none=True), path)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise PayloadError(f"{path} has a key of type {type(key).__name__} ({key!r}); JSON keys are strings")
            out[key] = jsonable(item, f"{path}.{key}")
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [jsonable(item, f"{path}[{i}]") for i, item in enumerate(items)]
    raise PayloadError(f"{path} is a {type(value).__name__}, which cannot be serialised to JSON",
                       hint="convert it to str, int, float, bool, None, list or dict first")
