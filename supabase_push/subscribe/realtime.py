"""Push through Supabase Realtime, supervised: the official client's gaps, filled.

The client never checks heartbeat replies, gives up reconnecting silently, drops async
callbacks and dies when a callback raises (research/clients.md). So: our callback only
queues; a watchdog sends an acknowledged broadcast every ``liveness_interval`` and treats
a missing ack as a dead connection; a user token is refreshed before it expires; any
channel error, close or timeout ends ``run()`` with a TransportError, and the subscriber
builds a new client (and so new channels) on its next attempt.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Literal

from .. import _realtime_client as rt
from ..broadcast.websocket import realtime_url
from ..config import scrub
from ..errors import AccessRefusedError, TransportError
from ..events import ChangeEvent
from .transports import Emit, Hint, TokenSource, Up, parse_push

__all__ = ["RealtimeTransport", "seconds_left"]

log = logging.getLogger("supabase_push.subscribe")

CHANGE_EVENTS = {"INSERT", "UPDATE", "DELETE", "TRUNCATE"}


def _published(payload: object) -> bool:
    """Whether a broadcast is a published event from the change log (it goes out under its own name)."""
    return isinstance(payload, dict) and payload.get("op") == "EVENT" and "cursor" in payload


def seconds_left(token: str) -> float | None:
    """Seconds until the JWT's ``exp`` (read, not verified), or None if it has none."""
    try:
        body = token.split(".")[1]
        exp = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))["exp"]
        return float(exp) - time.time()
    except (IndexError, KeyError, TypeError, ValueError):
        return None


class RealtimeTransport:
    name: Literal["realtime"] = "realtime"

    def __init__(self, url: str, key: str, *, private: bool = True, liveness_interval: float = 10.0,
                 timeout: float = 10.0, buffer: int = 10_000, access_token: TokenSource | None = None) -> None:
        self.url = realtime_url(url)
        self.private = private
        self.liveness_interval = liveness_interval
        self.timeout = timeout
        self._key = key
        self._buffer = buffer
        self._access_token = access_token
        self._tokens_seen: list[str] = []  # to keep them out of messages
        self._warned_no_probe = False

    async def _fresh_token(self) -> str | None:
        source = self._access_token
        if source is None:
            return None
        token = source() if callable(source) else source
        if inspect.isawaitable(token):
            token = await token
        if token is None:
            return None
        if not isinstance(token, str) or not token:
            raise TransportError("the access_token function returned no token")
        self._tokens_seen = [*self._tokens_seen[-4:], token]
        return token

    def _scrub(self, text: str) -> str:
        return scrub(text, [self._key, *self._tokens_seen])

    def describe(self) -> str:
        return f"Supabase Realtime at {self.url}"

    async def run(self, topics: Sequence[str], emit: Emit, up: Up) -> None:
        loop = asyncio.get_running_loop()
        failed: asyncio.Future[str] = loop.create_future()
        pending: asyncio.Queue[ChangeEvent | Hint | None] = asyncio.Queue()
        overflowed = False

        def fail(reason: str) -> None:
            if not failed.done():
                failed.set_result(self._scrub(reason))

        def on_broadcast(message: Any) -> None:
            nonlocal overflowed
            try:  # never let anything escape into the client's receive loop
                payload = message.get("payload")
                if str(message.get("event", "")).upper() not in CHANGE_EVENTS and not _published(payload):
                    return  # a service's broadcast, not a change
                event = parse_push(payload)
                if pending.qsize() >= self._buffer:
                    overflowed = True  # dropped here, read back by cursor
                    return
                pending.put_nowait(event)
            except Exception as exc:  # pragma: no cover - defensive
                fail(f"could not take a message: {exc!r}")

        def on_state(name: str) -> rt.OnState:
            def callback(state: rt.State, error: Exception | None) -> None:
                if state != rt.State.SUBSCRIBED:
                    fail(f"channel {name}: {state.value}{f' ({error})' if error else ''}")
            return callback

        client = rt.client(self.url, self._key, reconnect=False, timeout=max(1, round(self.timeout)))
        try:
            token = await self._fresh_token()
            if token is not None:
                await client.set_auth(token)
            try:
                async with asyncio.timeout(self.timeout + 1):
                    await client.connect()
            except Exception as exc:
                status = getattr(getattr(exc, "response", None), "status_code", None)
                kind = AccessRefusedError if status in (401, 403) else TransportError
                raise kind(f"cannot connect to {self.url}: {self._scrub(str(exc) or type(exc).__name__)}",
                           hint="check the key (SUPABASE_SERVICE_ROLE_KEY or SUPABASE_ANON_KEY)"
                           if kind is AccessRefusedError else None) from None
            for topic in topics:
                channel = await rt.join(client, topic, rt.channel_options(private=self.private, ack=False),
                                        on_state(topic), on_broadcast)
                if not channel.is_joined:
                    reason = failed.result() if failed.done() else f"channel {topic}: no reply"
                    raise TransportError(f"{self.describe()} refused {topic!r}: {reason}",
                                         hint="private topics need the service role key or an RLS read policy")
            probe = await self._join_probe(client, fail)
            tasks = [asyncio.create_task(self._refresh(client, token, fail))]
            if probe is not None:
                tasks.append(asyncio.create_task(self._watch(probe, fail)))
            await up()
            getter: asyncio.Future[ChangeEvent | Hint | None] | None = None
            try:
                while not failed.done():
                    getter = asyncio.ensure_future(pending.get())
                    waiting: set[asyncio.Future[Any]] = {getter, failed}
                    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                    if not getter.done():
                        break
                    await emit(getter.result())
                    if overflowed:
                        overflowed = False
                        await emit(None)
            finally:
                if getter is not None:
                    getter.cancel()
                for task in tasks:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            raise TransportError(f"{self.describe()}: {failed.result()}")
        finally:
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow the cancellation that brought us here
            # (Subscriber.close() then waited for ever on a transport that went on reconnecting).
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await client.close()

    async def _refresh(self, client: rt.Client, token: str | None, fail: Callable[[str], None]) -> None:
        """Hand the server a new token before the current one expires (a minute before, or at 80 % of a short life)."""
        while token is not None:
            left = seconds_left(token)
            if left is None:
                return
            await asyncio.sleep(max(0.5, left - min(60.0, left * 0.2)))
            try:
                token = await self._fresh_token()
            except Exception as exc:
                fail(f"could not refresh the access token: {exc}")
                return
            if token is not None and (seconds_left(token) or 1.0) <= 0:  # a fixed token: not a 2 Hz refresh loop
                fail("the access token expired and its source gave no fresh one")
                return
            try:
                await client.set_auth(token)
            except Exception as exc:
                fail(f"could not refresh the access token: {exc}")
                return

    async def _join_probe(self, client: rt.Client, fail: Callable[[str], None]) -> rt.Channel | None:
        """A public channel of our own for the watchdog's acknowledged pings. A project that
        refuses public channels gets no watchdog (warned once): the websocket keepalive
        (~50 s) and the subscriber's periodic reads remain."""
        joined = False

        def on_state(state: rt.State, error: Exception | None) -> None:
            if joined and state != rt.State.SUBSCRIBED:
                fail(f"liveness channel: {state.value}{f' ({error})' if error else ''}")

        probe = await rt.join(client, f"supabase-push-liveness-{uuid.uuid4().hex[:12]}",
                              rt.channel_options(private=False, ack=True, presence=False), on_state)
        joined = probe.is_joined
        if joined:
            return probe
        if not self._warned_no_probe:
            self._warned_no_probe = True
            log.warning("%s refused a public liveness channel: a silent connection is noticed only by the "
                        "websocket keepalive (~50 s) and the subscriber's periodic reads", self.describe())
        return None

    async def _watch(self, probe: rt.Channel, fail: Callable[[str], None]) -> None:
        """An acknowledged round trip every interval: the Phoenix-level liveness check the client lacks."""
        client_timeout = max(1, round(self.liveness_interval))
        while True:
            await asyncio.sleep(self.liveness_interval)
            acked = asyncio.get_running_loop().create_future()

            def ok(_: Any, acked: asyncio.Future[bool] = acked) -> None:
                if not acked.done():
                    acked.set_result(True)

            try:
                await rt.broadcast(probe, "ping", {}, client_timeout, ok=ok)
                async with asyncio.timeout(self.liveness_interval):
                    await acked
            except (TimeoutError, Exception) as exc:
                fail(f"no reply from the server within {self.liveness_interval:g} s ({type(exc).__name__})")
                return
