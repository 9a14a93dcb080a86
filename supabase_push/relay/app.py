"""The relay as a Starlette app: ``GET /events`` (SSE), ``GET /stats`` (admin), ``GET /healthz``.

    app = create_app(RelayConfig(settings=Settings.from_env(),
                                 authenticator=Authenticator(secret=...),
                                 policy=Policy(topics=[...])))

One :class:`~supabase_push.Subscriber` per process feeds the :class:`Hub`; run it with
``supabase-push relay`` or any ASGI server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ..config import Settings
from ..errors import TransportError
from ..events import Cursor
from ..subscribe import Subscriber, reader_for
from .auth import Authenticator, Principal, Refused
from .hub import Hub
from .policy import Policy

__all__ = ["RelayConfig", "create_app"]

log = logging.getLogger("supabase_push.relay")


@dataclass
class RelayConfig:
    settings: Settings
    """Where the changes come from: DATABASE_URL and/or SUPABASE_URL with the service role key."""
    authenticator: Authenticator
    policy: Policy
    heartbeat: float = 15.0
    buffer: int = 1000
    """Events a stream may have unsent before it is cut off."""
    ring_size: int = 10_000
    """Newest events kept in memory for streams that reconnect."""
    max_per_user: int = 5
    allow_origins: Sequence[str] = ()
    transport: str = "auto"
    reader: str = "auto"
    rest_url: str | None = None
    subscriber_options: dict[str, Any] = field(default_factory=dict)


def create_app(config: RelayConfig) -> Starlette:
    relay = _Relay(config)
    middleware = [Middleware(CORSMiddleware, allow_origins=list(config.allow_origins), allow_methods=["GET"],
                             allow_headers=["Authorization", "Last-Event-ID"])] if config.allow_origins else []
    app = Starlette(routes=[Route("/events", relay.events), Route("/stats", relay.stats),
                            Route("/healthz", relay.healthz)],
                    middleware=middleware, lifespan=relay.lifespan)
    app.state.relay = relay
    return app


class _Relay:
    def __init__(self, config: RelayConfig) -> None:
        self.config = config
        self.hub = Hub(config.policy, reader_for(config.settings, config.reader, rest_url=config.rest_url),
                       buffer=config.buffer, ring_size=config.ring_size, max_per_user=config.max_per_user)
        self.subscriber: Subscriber | None = None
        self._heartbeats: asyncio.Task[None] | None = None
        self.started = time.monotonic()

    async def prepare(self) -> None:
        """Read where the log ends and start the subscriber there (once; the lifespan does it if no one did)."""
        if self.subscriber is not None:
            return
        head = await self.hub.reader.head()
        subscriber = Subscriber.from_settings(
            self.config.settings, topics=self.config.policy.topics, transport=self.config.transport,
            reader=self.hub.reader, start=head, **self.config.subscriber_options)  # one reader for the relay
        subscriber.on(None, self.hub.feed)
        self.hub.start_at(head)
        await subscriber.start()
        self.subscriber = subscriber
        self._heartbeats = asyncio.create_task(self.hub.beat(self.config.heartbeat), name="supabase-push-heartbeats")
        log.info("relay: serving %s from %s", ", ".join(self.config.policy.topics), head)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        await self.prepare()
        try:
            yield
        finally:
            if self._heartbeats is not None:
                self._heartbeats.cancel()
            if self.subscriber is not None:
                await self.subscriber.close()
            await self.hub.reader.close()

    # -- routes -------------------------------------------------------------------------------

    async def events(self, request: Request) -> Response:
        try:
            principal = await self._principal(request)
            asked = [t for value in request.query_params.getlist("topics") for t in value.split(",") if t]
            topics = self.config.policy.topics_for(principal, asked)
            after = _resume_cursor(request)
            start = request.query_params.get("start")
            if start not in (None, "", "snapshot"):
                raise Refused(f"start must be 'snapshot', not {start[:40]!r}", status=400)
            conn = self.hub.open(principal, topics, after, snapshot=start == "snapshot")
        except Refused as exc:
            return _refusal(exc)
        log.info("relay: stream %d opened for %s (tier %s) on %s from %s", conn.id, principal.user_id,
                 principal.tier, ",".join(topics), after or ("a snapshot" if conn.snapshot else "now"))

        # a stream lives no longer than its token: the browser must come back with a fresh one
        expiry = asyncio.get_running_loop().call_later(principal.expires_in(), self.hub.expire, conn)

        def closed() -> None:
            expiry.cancel()
            self.hub.close(conn)
            reason = " (cut off: too slow)" if conn.dropped else " (token expired)" if conn.expired else ""
            log.info("relay: stream %d closed after %d events%s", conn.id, conn.sent, reason)

        return _EventStream(self.hub.stream(conn), conn.cut, closed)

    async def stats(self, request: Request) -> Response:
        try:
            principal = await self._principal(request)
            if not principal.admin:
                raise Refused("/stats is for the service role", status=403)
        except Refused as exc:
            return _refusal(exc)
        subscriber = self.subscriber.stats.as_dict() if self.subscriber else None
        return JSONResponse({**self.hub.stats(), "subscriber": subscriber, "jwks": self.config.authenticator.jwks(),
                             "uptime_s": round(time.monotonic() - self.started, 1)})

    async def healthz(self, request: Request) -> Response:
        state = self.subscriber.stats.state if self.subscriber else "starting"
        running = self.subscriber is not None and state != "stopped"
        # Public, so it says how the relay is, not where the log is (the cursor is in /stats, for the service role).
        return JSONResponse({"status": "ok" if running else "down", "subscriber": state,
                             "connections": self.hub.stats()["connections"]},
                            status_code=200 if running else 503)

    async def _principal(self, request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, credentials = header.partition(" ")
        token = credentials.strip() if scheme.lower() == "bearer" else request.query_params.get("access_token")
        return await self.config.authenticator.authenticate(token)


def _resume_cursor(request: Request) -> Cursor | None:
    """The browser's Last-Event-ID (sent on its own reconnects) wins over ``?after=`` (a page's first connect)."""
    text = request.headers.get("last-event-id") or request.query_params.get("after")
    if not text:
        return None
    try:
        return Cursor.parse(text)
    except ValueError:
        raise Refused(f"Last-Event-ID / after is not a cursor: {text[:40]!r} (expected 'seq:id')",
                        status=400) from None


def _refusal(exc: Refused) -> Response:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
    if exc.status in (429, 503):
        headers["Retry-After"] = "5"
    return JSONResponse({"error": exc.message}, status_code=exc.status, headers=headers)



class _EventStream(Response):
    """An SSE response that ends when the client leaves, the stream ends, or ``cut`` is set.

    A stream the hub cuts off is usually blocked in ``send`` on a full socket, so it is
    cancelled, not told; the response is then incomplete and the server closes the socket.
    """

    def __init__(self, chunks: AsyncIterator[bytes], cut: asyncio.Event, closed: Callable[[], None]) -> None:
        self.status_code, self.background = 200, None
        self.raw_headers = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
                            (b"x-accel-buffering", b"no")]  # and no content-length: Response.__init__ would add one
        self._chunks, self._cut, self._closed = chunks, cut, closed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def pump() -> None:
            with contextlib.suppress(TransportError):  # logged by the hub; the browser retries
                async for chunk in self._chunks:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        async def client_left() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            tasks = [asyncio.create_task(pump()), asyncio.create_task(client_left()),
                     asyncio.create_task(self._cut.wait())]
            try:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            self._closed()
