"""What a push transport is, to the subscriber: the interface, how a push payload becomes an event, and the
factory that picks one from settings (importing only the one it builds: Realtime brings the official client)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from .. import _json
from ..config import Settings
from ..errors import ConfigError
from ..events import ChangeEvent

__all__ = ["Emit", "Hint", "PushTransport", "TokenSource", "Up", "parse_push", "transport_from_settings"]

TokenSource = str | Callable[[], str | Awaitable[str | None] | None]
"""A user JWT, or a function (sync or async) that returns a fresh one (None: nobody is signed in,
the key stands for itself until the next connection asks again)."""


@dataclass(frozen=True)
class Hint:
    """A push that says a change exists but does not carry its row as the database has it: a
    NOTIFY (it never carries rows: any role may LISTEN), or a row some client has parsed lossily.
    The subscriber reads the change by cursor, with its own rights, and delivers it from there;
    what a hint says moves no cursor, so a forged one delivers nothing."""

    event: ChangeEvent


Emit = Callable[[ChangeEvent | Hint | None], Awaitable[None]]
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


def parse_push(payload: object, *, carries_rows: bool = True) -> ChangeEvent | Hint | None:
    """A change envelope from a push payload, or None for anything else (a service broadcast).

    ``carries_rows=False`` (NOTIFY: any role may send one, and ours never carry rows) makes every
    envelope a :class:`Hint`, whatever it claims. Text is parsed here with exact numbers. A payload
    some client has already parsed (the official Realtime client turns every JSON number with a
    fraction into a double: ``12345678901234567890.1`` and ``1.000000000000000001`` arrive rounded)
    is a :class:`Hint` when its rows hold a float, since no float there can be proven exact; so is a
    push without rows (``truncated``)."""
    inexact = not carries_rows
    if isinstance(payload, (str, bytes)):
        try:
            payload = _json.loads(payload, exact_numbers=True)
        except ValueError:
            return None
    elif _holds_float(payload):
        inexact = True
    if not isinstance(payload, dict) or "cursor" not in payload:
        return None
    try:
        event = ChangeEvent.model_validate(payload)
    except ValueError:
        return None
    return Hint(event) if inexact or event.truncated else event


def _holds_float(value: object) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(_holds_float(item) for item in value.values())
    if isinstance(value, list):
        return any(_holds_float(item) for item in value)
    return False


def transport_from_settings(settings: Settings, transport: str = "auto", *, liveness_interval: float = 10.0,
                            access_token: TokenSource | None = None) -> PushTransport | None:
    """The push transport ``settings`` give (None: none, the subscriber polls). ``auto``: Realtime when
    SUPABASE_URL and a key are set, else LISTEN when DATABASE_URL is; ``realtime``, ``listen`` force one,
    ``poll`` asks for none."""
    key = settings.api_key
    if transport == "realtime" or (transport == "auto" and settings.supabase_url and key):
        if not (settings.supabase_url and key):
            raise ConfigError("transport 'realtime' needs SUPABASE_URL and a key",
                              hint="set SUPABASE_SERVICE_ROLE_KEY (or SUPABASE_ANON_KEY with an RLS read policy)")
        from .realtime import RealtimeTransport

        return RealtimeTransport(settings.supabase_url, key, private=settings.private,
                                 liveness_interval=liveness_interval, access_token=access_token)
    if transport == "listen" or (transport == "auto" and settings.database_url):
        if not settings.database_url:
            raise ConfigError("transport 'listen' needs DATABASE_URL")
        from .listen import ListenTransport

        return ListenTransport(settings.database_url, liveness_interval=liveness_interval)
    if transport not in ("auto", "poll"):
        raise ConfigError(f"unknown transport {transport!r}", hint="use auto, realtime, listen or poll")
    return None
