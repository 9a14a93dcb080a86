"""Reading the change log by cursor: through SQL (psycopg) or PostgREST's RPC (httpx)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Sequence
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

import httpx
import orjson
import psycopg

from .. import _json
from .._ahead import drop, until_sent
from .._gc import collector_paused
from ..changelog import (
    SnapshotStart,
    aend_of,
    aevents_of,
    aexecute_read,
    aread_head,
    aread_snapshot,
    astamp,
    rows_to_events,
)
from ..config import Settings, api_key_headers, scrub
from ..db import aconnect, describe_dsn, map_error
from ..errors import (
    AccessRefusedError,
    AuthenticationError,
    ConfigError,
    DatabaseError,
    PermissionDeniedError,
    TransportError,
)
from ..events import START, ChangeEvent, Cursor, Source

__all__ = ["Reader", "RestReader", "SqlReader", "read_pages", "reader_for"]


class Reader(Protocol):
    """Reads by cursor. A read stamps first (one stamper round, so it sees every change committed
    before it) unless ``source`` is a push transport's name (a push came from a round already) or
    the reader stamped less than :data:`STAMP_EVERY` ago (the pages of one catch-up)."""

    name: str

    def describe(self) -> str: ...

    async def read(self, after: Cursor, limit: int, topics: Sequence[str], source: Source) -> list[ChangeEvent]:
        """Up to ``limit`` changes on ``topics`` after ``after``, in cursor order; TransportError if it cannot."""
        ...

    async def head(self) -> Cursor:
        """The cursor of the newest change in the log; TransportError if it cannot tell."""
        ...

    def snapshot(self, topics: Sequence[str],
                 page_size: int) -> AsyncGenerator[SnapshotStart | list[ChangeEvent], None]:
        """The rows of the topics' tables in one snapshot: a :class:`SnapshotStart`, then pages of SNAPSHOT
        events (see :func:`~supabase_push.changelog.aread_snapshot`); TransportError if it cannot."""
        ...

    async def close(self) -> None: ...


class _StampFirst:
    """When a read should run a stamper round first (the rule in :class:`Reader`'s docstring)."""

    def __init__(self) -> None:
        self._at = -STAMP_EVERY

    def due(self, source: Source) -> bool:
        if source in PUSHED or time.monotonic() - self._at < STAMP_EVERY:
            return False
        self._at = time.monotonic()
        return True


_T = TypeVar("_T")


class _ReadAhead(Generic[_T]):
    """The next page of a catch-up, asked for before this one's events are built: the database (or
    PostgREST) reads it meanwhile. A full page read at one moment is the page a later read from its end
    would get: a cursor is given above every cursor already given, so what is stamped later comes after
    it. A read from anywhere else leaves the page to finish alone, unused."""

    def __init__(self) -> None:
        self._after: tuple[Cursor, int, tuple[str, ...]] | None = None
        self._task: asyncio.Task[_T] | None = None

    def take(self, after: Cursor, limit: int, topics: Sequence[str]) -> asyncio.Task[_T] | None:
        task, self._task = self._task, None
        if task is not None and self._after != (after, limit, tuple(topics)):
            task.add_done_callback(_forget)
            return None
        return task

    async def start(self, after: Cursor, limit: int, topics: Sequence[str], read: Coroutine[Any, Any, _T],
                    sent: asyncio.Event | None = None) -> None:
        """Start ``read`` and return once it has sent its request (see :func:`until_sent`), so this page's events
        are built while the next is read."""
        if self._task is not None:
            self._task.add_done_callback(_forget)
        self._after, self._task = (after, limit, tuple(topics)), asyncio.ensure_future(read)
        await until_sent(self._task, sent)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await drop(task)


def _forget(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: the page was not wanted, nor is its error


_KNOWN_TOPICS = "SELECT public.supabase_push_topics()"


class SqlReader:
    name = "sql"

    def __init__(self, database_url: str) -> None:
        self._dsn = database_url
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._stamp_first = _StampFirst()
        self._ahead: _ReadAhead[psycopg.AsyncCursor[tuple[Any, ...]]] = _ReadAhead()

    def describe(self) -> str:
        return f"SQL at {describe_dsn(self._dsn)}"

    async def read(self, after: Cursor, limit: int, topics: Sequence[str], source: Source) -> list[ChangeEvent]:
        ahead = self._ahead.take(after, limit, topics)
        async with self._connection() as conn:
            if ahead is not None:
                read = await ahead
            else:
                if self._stamp_first.due(source):
                    await astamp(conn)
                read = await aexecute_read(conn, after, limit=limit, topics=topics)
            if source == "catch-up" and read.rowcount == limit and (end := await aend_of(read)):
                # the next page is read while this one is built
                await self._ahead.start(end, limit, topics, aexecute_read(conn, end, limit=limit, topics=topics))
            return await aevents_of(read, source)

    async def head(self) -> Cursor:
        async with self._connection() as conn:
            return await aread_head(conn)

    async def known_topics(self) -> set[str] | None:
        """The topics changes can come on in this database: the routed tables' and those declared for events;
        None where the schema or the role's rights do not tell."""
        async with self._connection() as conn:
            try:
                cur = await conn.execute(_KNOWN_TOPICS)
                return {row[0] for row in await cur.fetchall()}
            except (psycopg.errors.UndefinedFunction, psycopg.errors.UndefinedTable,
                    psycopg.errors.InsufficientPrivilege):  # an older schema, or a role that may not ask
                return None

    async def snapshot(self, topics: Sequence[str],
                       page_size: int) -> AsyncGenerator[SnapshotStart | list[ChangeEvent], None]:
        """On a connection of its own: its transaction stays open while the pages go out, and the reads of
        others (the relay's streams share this reader) must not run inside it."""
        with self._as_transport_error():
            conn = await aconnect(self._dsn)
            try:
                async for item in aread_snapshot(conn, topics, page_size=page_size):
                    yield item
            finally:
                await conn.close()  # a rollback with the connection: nothing to keep

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """The reader's connection (opened on first use); any failure closes it and becomes a TransportError."""
        try:
            with self._as_transport_error():
                if self._conn is None or self._conn.closed:
                    self._conn = await aconnect(self._dsn)
                yield self._conn
        except TransportError:
            await self.close()
            raise

    @contextlib.contextmanager
    def _as_transport_error(self) -> Iterator[None]:
        try:
            yield
        except DatabaseError as exc:
            raise transport_error(exc, exc.message, exc.hint) from None
        except psycopg.Error as exc:
            error = map_error(exc, self._dsn)
            raise transport_error(error, f"cannot read the change log: {error.message}",
                                   _hint(exc.sqlstate) or error.hint) from None

    async def close(self) -> None:
        await self._ahead.close()
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()


class RestReader:
    """``POST <rest_url>/rpc/supabase_push_changes`` (``rest_url`` is ``<project>/rest/v1`` on Supabase).

    The body is parsed here with exact numbers (a numeric past a double or past ``int(str)``'s
    4,300 digits arrives as a ``Decimal``), so no row can stop the reader.

    Each read first asks for a stamper round (``POST /rpc/supabase_push_stamp``, service role only), so
    a read sees every change committed before it even where no process or pg_cron stamps; a key that
    may not call it (anon, a user's token) skips that from then on and reads what has been stamped."""

    name = "rest"

    def __init__(self, rest_url: str, key: str, *, timeout: float = 10.0,
                 access_token: Callable[[], Awaitable[str | None]] | None = None) -> None:
        self.rest_url = rest_url.rstrip("/")
        self._key = key
        self._access_token = access_token  # a signed-in user's JWT (reads under their rights), asked per read
        headers = {**api_key_headers(key), "Accept": "application/json", "Content-Type": "application/json"}
        self._http = httpx.AsyncClient(base_url=self.rest_url, headers=headers, timeout=timeout)
        self._stamps = True
        self._stamp_first = _StampFirst()
        self._ahead: _ReadAhead[httpx.Response] = _ReadAhead()

    def describe(self) -> str:
        return f"PostgREST at {self.rest_url}"

    async def read(self, after: Cursor, limit: int, topics: Sequence[str], source: Source) -> list[ChangeEvent]:
        ahead = self._ahead.take(after, limit, topics)
        if ahead is not None:
            response = await ahead
        else:
            if self._stamp_first.due(source):
                await self._stamp()
            response = await self._read_rows(after, limit, topics)
        rows: list[dict[str, Any]] | None = None
        if source == "catch-up":  # a full page: the next is read while this one is parsed and built
            end = _last_cursor(response, limit)
            if end is None:
                rows = self._rows(response)
                if len(rows) == limit:
                    end = Cursor(int(rows[-1]["seq"]), int(rows[-1]["id"]))
            if end is not None:
                sent = asyncio.Event()
                await self._ahead.start(end, limit, topics, self._read_rows(end, limit, topics, sent), sent)
        return rows_to_events(self._rows(response) if rows is None else rows, source)

    async def _read_rows(self, after: Cursor, limit: int, topics: Sequence[str],
                         sent: asyncio.Event | None = None) -> httpx.Response:
        params = {"after_seq": after.seq, "after_id": after.id, "max_rows": limit, "topics": list(topics)}
        return await self._post("supabase_push_changes", params, sent)

    async def head(self) -> Cursor:
        await self._stamp()
        rows = await self._rpc("supabase_push_head", {})
        return Cursor(int(rows[0]["seq"]), int(rows[0]["id"])) if rows else START

    async def snapshot(self, topics: Sequence[str],
                       page_size: int) -> AsyncGenerator[SnapshotStart | list[ChangeEvent], None]:
        """Each PostgREST call is a transaction of its own, so the snapshot is copied in one
        (``supabase_push_snapshot_open``: the caller's rights), read page by page, and dropped."""
        await self._stamp()
        [opened] = await self._rpc("supabase_push_snapshot_open", {"topics": list(topics)})
        snapshot_id = opened["snapshot_id"]
        try:
            start = SnapshotStart(Cursor(int(opened["seq"]), int(opened["id"])),
                                  frozenset(int(i) for i in opened["skip"]), datetime.fromisoformat(opened["taken_at"]))
            yield start

            def page(after: int, sent: asyncio.Event | None = None) -> asyncio.Task[list[dict[str, Any]]]:
                return asyncio.ensure_future(self._rpc("supabase_push_snapshot_page", {
                    "snapshot_id": snapshot_id, "after_n": after, "max_rows": page_size}, sent))

            pending = page(0)
            try:  # each page asked for before the one before it is built: PostgREST reads it meanwhile
                while rows := await pending:
                    full = len(rows) == page_size
                    if full:
                        pending = page(int(rows[-1]["n"]), sent := asyncio.Event())
                        await until_sent(pending, sent)
                    yield [event for (topic, schema, table), records in _by_table(rows)
                           for event in start.events(topic, schema, table, records)]
                    if not full:
                        break
            finally:  # a reader that stopped early: the page asked ahead is not wanted
                await drop(pending)
        finally:
            with contextlib.suppress(TransportError):  # an hour on, the next open drops it anyway
                await self._post("supabase_push_snapshot_close", {"snapshot_id": snapshot_id})

    async def known_topics(self) -> set[str] | None:
        """As :meth:`SqlReader.known_topics`, through ``POST /rpc/supabase_push_topics``."""
        try:
            rows = self._rows(await self._post("supabase_push_topics", {}))
        except AccessRefusedError:
            return None
        except TransportError as exc:
            if not _missing_function(exc):
                raise
            return None
        return {str(row) for row in rows}

    async def _stamp(self) -> None:
        if not self._stamps:
            return
        try:
            await self._post("supabase_push_stamp", {})
        except AccessRefusedError:
            self._stamps = False  # not this key's to do: the process or pg_cron that stamps will
        except TransportError as exc:
            if not _missing_function(exc):
                raise
            self._stamps = False

    async def _rpc(self, function: str, params: dict[str, Any],
                   sent: asyncio.Event | None = None) -> list[dict[str, Any]]:
        """A function that returns rows (``sent``: see :meth:`_post`)."""
        return self._rows(await self._post(function, params, sent))

    def _rows(self, response: httpx.Response) -> list[dict[str, Any]]:
        try:
            with collector_paused():
                body = _json.loads(response.content, exact_numbers=True)
        except ValueError:
            body = None
        if not isinstance(body, list):
            raise TransportError(f"{self.describe()} answered with something other than rows: "
                                 f"{response.text[:100]!r}")
        return body

    async def _post(self, function: str, params: dict[str, Any],
                    sent: asyncio.Event | None = None) -> httpx.Response:
        """``POST /rpc/<function>``: the response, or the error as a TransportError (AccessRefusedError when
        refused). ``sent`` is set once the request is on its way."""
        token = await self._access_token() if self._access_token is not None else None
        headers = {"Authorization": f"Bearer {token}"} if token else None
        extensions = None if sent is None else {"trace": _setting_when_sent(sent)}
        try:
            response = await self._http.post(f"/rpc/{function}", json=params, headers=headers, extensions=extensions)
        except httpx.HTTPError as exc:
            raise TransportError(f"cannot read from {self.describe()}: "
                                 f"{scrub(str(exc) or type(exc).__name__, [self._key])}") from None
        if not response.is_success:
            try:
                body = _json.loads(response.content) if response.content else None
            except ValueError:
                body = None
            error = body if isinstance(body, dict) else {}
            code = str(error.get("code") or response.status_code)
            message = str(error.get("message") or response.reason_phrase)
            refused = code in REFUSED_CODES or response.status_code in (401, 403) or "api key" in message.lower()
            raise (AccessRefusedError if refused else TransportError)(
                f"{self.describe()} refused the read: {code} {scrub(message, [self._key])}", hint=_hint(code))
        return response

    async def close(self) -> None:
        await self._ahead.close()
        await self._http.aclose()


def _by_table(rows: list[dict[str, Any]]) -> list[tuple[tuple[str, str, str], list[Any]]]:
    """A snapshot page's rows as runs of one table's (a page holds the tables one after the other)."""
    runs: list[tuple[tuple[str, str, str], list[Any]]] = []
    for row in rows:
        table = (row["topic"], row["schema_name"], row["table_name"])
        if not runs or runs[-1][0] != table:
            runs.append((table, []))
        runs[-1][1].append(row["record"])
    return runs


def _last_cursor(response: httpx.Response, limit: int) -> Cursor | None:
    """The cursor of a full page's last row, from PostgREST's ``Content-Range`` (``0-4999/*``: 5,000 rows) and
    the tail of its body, without parsing the page; None where either says otherwise. PostgREST writes each
    row as ``{"seq":1,"id":2,...}``, and nothing in a row can read so (a JSON string escapes its quotes,
    and jsonb writes ``{"seq": 1`` with a space). A wrong guess costs a page read for nothing, never a change: the
    page read ahead is used only for the cursor the parsed page ends at."""
    first, _, last = response.headers.get("content-range", "").partition("/")[0].partition("-")
    if not (first.isdigit() and last.isdigit() and int(last) - int(first) + 1 == limit):
        return None
    body, start = response.content, len(response.content)
    while (start := body.rfind(b'{"seq":', 0, start)) >= 0 and not body[start + 7:start + 8].isdigit():
        pass  # a nested {"seq": ...} of a row's own: jsonb writes it with a space
    try:
        row = orjson.loads(body[start:body.rindex(b"]")]) if start >= 0 else None
    except (ValueError, orjson.JSONDecodeError):
        return None
    seq, change_id = (row.get("seq"), row.get("id")) if isinstance(row, dict) else (None, None)
    return Cursor(seq, change_id) if type(seq) is int and type(change_id) is int else None


def _setting_when_sent(sent: asyncio.Event) -> Callable[[str, dict[str, Any]], Awaitable[None]]:
    """An httpcore trace that sets ``sent`` when the request's body has gone (HTTP/1.1 and 2 alike)."""
    async def trace(event: str, info: dict[str, Any]) -> None:
        if event.endswith("send_request_body.complete"):
            sent.set()
    return trace


async def read_pages(reader: Reader, after: Cursor, topics: Sequence[str], *, page_size: int = 500,
                     source: Source = "catch-up", until: Cursor | None = None) -> AsyncIterator[list[ChangeEvent]]:
    """The change log after ``after``, page by page, each read from the last one's end: until a page comes
    back short (the log has nothing more), or one passes ``until`` (its changes after ``until`` are left
    out, and it is the last). A page may be empty. A reader's TransportError passes through."""
    while True:
        page = await reader.read(after, page_size, topics, source)
        if until is not None and page and page[-1].cursor > until:
            yield [event for event in page if event.cursor <= until]
            return
        yield page
        if len(page) < page_size:
            return
        after = page[-1].cursor


def reader_for(settings: Settings, reader: str = "auto", *, rest_url: str | None = None,
               access_token: Callable[[], Awaitable[str | None]] | None = None) -> Reader:
    """SQL when DATABASE_URL is set, else PostgREST at ``rest_url`` (default ``<SUPABASE_URL>/rest/v1``),
    as the user of ``access_token`` when it gives one; ``reader`` (``sql``, ``rest``) forces one."""
    rest = rest_url or (f"{settings.supabase_url}/rest/v1" if settings.supabase_url else None)
    if reader == "sql" or (reader == "auto" and settings.database_url):
        if not settings.database_url:
            raise ConfigError("reader 'sql' needs DATABASE_URL")
        return SqlReader(settings.database_url)
    if reader in ("rest", "auto"):
        if rest and settings.api_key:
            return RestReader(rest, settings.api_key, access_token=access_token)
        raise ConfigError("nothing to read the change log through: looked for DATABASE_URL, then SUPABASE_URL "
                          "(or SUPABASE_PUSH_REST_URL) with SUPABASE_SERVICE_ROLE_KEY",
                          hint="set DATABASE_URL, or SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY")
    raise ConfigError(f"unknown reader {reader!r}", hint="use auto, sql or rest")


STAMP_EVERY = 0.05
"""Seconds: a reader's reads stamp at most this often."""
PUSHED: frozenset[Source] = frozenset({"realtime", "listen"})
"""Reads a push asked for: the stamper round that sent it has stamped what it names, so no round first."""

REFUSED_CODES = {"401", "403", "PGRST301", "PGRST302", "42501"}
"""PostgREST's answers to a wrong key or a role without the right to read (Supabase's gateway says
"Invalid API key" with no code)."""


def transport_error(error: DatabaseError, message: str, hint: str | None) -> TransportError:
    """A database error as the reader's failure: refused credentials or rights say so (a retry will not help)."""
    refused = isinstance(error, AuthenticationError | PermissionDeniedError)
    return (AccessRefusedError if refused else TransportError)(message, hint=hint)


def _missing_function(exc: TransportError) -> bool:
    """PostgREST (or Postgres behind it) found no such function: an older schema, without it."""
    return "PGRST202" in exc.message or "42883" in exc.message


def _hint(code: str | None) -> str | None:
    if code == "404":
        return ("no PostgREST answers at this URL: set SUPABASE_PUSH_REST_URL to yours (hosted Supabase and "
                "`supabase-push serve` serve <project>/rest/v1; serve needs a PostgREST binary for it)")
    if code in ("PGRST301", "PGRST302", "401"):
        return "check the key: reading the change log needs the service role (or a grant to your role)"
    if code in ("PGRST202", "42883"):
        return "the change-log function is missing: run `supabase-push apply`"
    if code in ("3F000", "42P01"):  # no schema supabase_push, or no table of it
        return "supabase-push is not installed on this database: run `supabase-push apply`"
    if code == "42501":
        return "this role may not read the change log: use the service role key, or GRANT SELECT to it"
    return None
