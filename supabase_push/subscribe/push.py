"""What a push transport is, to the subscriber: the interface, and how a push payload becomes an event."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal, Protocol

from .. import _json
from ..events import ChangeEvent

__all__ = ["Emit", "PushTransport", "Up", "parse_push"]

Emit = Callable[[ChangeEvent | None], Awaitable[None]]
"""Hands the subscriber a push (None: some pushes were dropped, read them by cursor)."""
Up = Callable[[], Awaitable[None]]
"""Tells the subscriber the transport is subscribed."""


class PushTransport(Protocol):
    @property
    def name(self) -> Literal["realtime", "listen"]: ...

    def describe(self) -> str: ...

    async def run(self, topics: Sequence[str], emit: Emit, up: Up) -> None:
        """Subscribe, await ``up()``, then ``emit`` pushes until it fails (a TransportError)."""
        ...


def parse_push(payload: object) -> ChangeEvent | None:
    """A change envelope from a push payload, or None for anything else (a service broadcast).

    None too for a push that cannot carry its row exactly (a client that parsed a huge numeric
    into ``inf``): the subscriber then reads that change by cursor, where numbers are exact."""
    if isinstance(payload, (str, bytes)):
        try:
            payload = _json.loads(payload, exact_numbers=True)
        except ValueError:
            return None
    elif not _finite(payload):
        return None
    if not isinstance(payload, dict) or "cursor" not in payload:
        return None
    try:
        return ChangeEvent.model_validate(payload)
    except ValueError:
        return None


def _finite(value: object) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(item) for item in value.values())
    if isinstance(value, list):
        return all(_finite(item) for item in value)
    return True
