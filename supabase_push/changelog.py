"""Reading the change log by cursor, from SQL (the REST twin is the same function via RPC)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, get_args

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row
from psycopg.types.numeric import Int8BinaryLoader
from pydantic import BaseModel

from . import _json
from ._ahead import drop, until_sent
from ._gc import collector_paused
from .events import START, ChangeEvent, Cursor, Operation, Source

__all__ = [
    "SnapshotStart",
    "aend_of",
    "aevents_of",
    "aexecute_read",
    "aread_changes",
    "aread_head",
    "aread_snapshot",
    "astamp",
    "events_of_rows",
    "fetch_change",
    "read_changes",
    "read_head",
    "row_to_event",
    "rows_to_events",
    "stamp",
]

# The rows come as text and are parsed here with exact numbers: psycopg's jsonb loader would turn a
# numeric too long for int(str) into an error, and one too large for a double into inf. The results are
# binary (see _rows_cursor).
_READ = """
SELECT seq, id, topic, schema_name, table_name, op, record::text AS record, old_record::text AS old_record,
       committed_at
FROM public.supabase_push_changes(%(seq)s, %(id)s, %(limit)s, %(topics)s)
"""


# One stamping round (sql: supabase_push.stamp_v2), waiting for one already running: afterwards every
# change committed before the call has its cursor. It waits 2 s at most (a round stuck behind a lock
# on realtime.messages): then the read gets what is stamped, and the next one the rest.
_STAMP = "SELECT supabase_push.stamp_v2(true)"
# Why a round may not run here, and the read goes on without it: a schema without the stamper (version
# 1 stamped at commit), a role without EXECUTE, a read-only transaction or standby.
_CANNOT_STAMP = (psycopg.errors.UndefinedFunction, psycopg.errors.InsufficientPrivilege,
                 psycopg.errors.ReadOnlySqlTransaction, psycopg.errors.InvalidTransactionState)


def stamp(conn: psycopg.Connection[Any]) -> int | None:
    """Order what has committed (one stamper round) on an autocommit connection; how many transactions it
    stamped, or None where it cannot (see ``_CANNOT_STAMP``; inside a transaction it does nothing)."""
    if not conn.autocommit:
        return None
    try:
        row = conn.execute(_STAMP).fetchone()
    except _CANNOT_STAMP:
        return None
    return None if row is None else row[0]


async def astamp(conn: psycopg.AsyncConnection[Any]) -> int | None:
    """:func:`stamp` for asyncio."""
    if not conn.autocommit:
        return None
    try:
        row = await (await conn.execute(_STAMP)).fetchone()
    except _CANNOT_STAMP:
        return None
    return None if row is None else row[0]


def read_changes(
    conn: psycopg.Connection[Any],
    after: Cursor = START,
    *,
    limit: int = 500,
    topics: Sequence[str] | None = None,
    source: Source = "poll",
    stamp_first: bool = True,
) -> list[ChangeEvent]:
    """Up to ``limit`` changes after ``after``, in commit order: on an autocommit connection, every
    change committed before the call (it runs a stamper round first, unless ``stamp_first`` is False:
    a read that a push asked for, whose round is stamped already)."""
    if stamp_first:
        stamp(conn)
    with _rows_cursor(conn.cursor(row_factory=tuple_row, binary=True)) as cur:
        cur.execute(_READ, _params(after, limit, topics))
        with collector_paused():  # see aevents_of
            return events_of_rows(cur.fetchall(), source)


async def aread_changes(
    conn: psycopg.AsyncConnection[Any],
    after: Cursor = START,
    *,
    limit: int = 500,
    topics: Sequence[str] | None = None,
    source: Source = "poll",
    stamp_first: bool = True,
) -> list[ChangeEvent]:
    """:func:`read_changes` for asyncio."""
    if stamp_first:
        await astamp(conn)
    return await aevents_of(await aexecute_read(conn, after, limit=limit, topics=topics), source)


async def aexecute_read(conn: psycopg.AsyncConnection[Any], after: Cursor, *, limit: int,
                        topics: Sequence[str] | None) -> psycopg.AsyncCursor[tuple[Any, ...]]:
    """The first half of :func:`aread_changes` (no stamping round): the read sent and its result received, held
    by the cursor returned, no row of it a Python object yet; :func:`aevents_of` makes them events. A reader asks
    for the next page of a catch-up between the two (:func:`aend_of` says where this one ends)."""
    return await _executed(_rows_cursor(conn.cursor(row_factory=tuple_row, binary=True)), _READ,
                           _params(after, limit, topics))


async def _executed(cur: psycopg.AsyncCursor[tuple[Any, ...]], query: str | sql.Composed,
                    params: dict[str, Any] | None = None) -> psycopg.AsyncCursor[tuple[Any, ...]]:
    """``cur`` with ``query`` sent and its result received, to fetch from and close (closed if that fails)."""
    try:
        await cur.execute(query, params)
    except BaseException:
        await cur.close()
        raise
    return cur


async def aend_of(cur: psycopg.AsyncCursor[tuple[Any, ...]]) -> Cursor | None:
    """Where the read of :func:`aexecute_read` ends (its last change's cursor; None: no change), making that row
    alone a Python object."""
    if not cur.rowcount:
        return None
    await cur.scroll(cur.rowcount - 1, mode="absolute")
    row = await cur.fetchone()
    await cur.scroll(0, mode="absolute")
    assert row is not None
    return Cursor(row[0], row[1])


async def aevents_of(cur: psycopg.AsyncCursor[tuple[Any, ...]], source: Source) -> list[ChangeEvent]:
    """The second half of :func:`aread_changes`: the rows of the read :func:`aexecute_read` received, fetched and
    built into events (:func:`events_of_rows`), then the cursor closed. The collector stays paused from the
    fetch to the last event (the fetch of a result already received does no I/O: nothing else runs meanwhile),
    so a page's rows are gone before any collection could walk them: when one could, the collections of a
    100k catch-up took a tenth of its time, a full one 13-18 ms of it."""
    try:
        with collector_paused():
            return events_of_rows(await cur.fetchall(), source)
    finally:
        await cur.close()


_AnyCursor = TypeVar("_AnyCursor", psycopg.Cursor[tuple[Any, ...]], psycopg.AsyncCursor[tuple[Any, ...]])


def _rows_cursor(cur: _AnyCursor) -> _AnyCursor:
    """A cursor for ``_READ``: rows as tuples whatever the connection's row factory, in binary, and each commit
    time as its binary form, microseconds since 2000-01-01 UTC, which :func:`events_of_rows` turns into a
    datetime once per transaction. psycopg's timestamptz loader took 0.4 us a row (half of its work on a page),
    and its text form cannot be read unless the session's DateStyle is ISO."""
    cur.adapters.register_loader("timestamptz", Int8BinaryLoader)
    return cur


_HEAD = "SELECT seq, id FROM public.supabase_push_head()"


def read_head(conn: psycopg.Connection[Any]) -> Cursor:
    """The cursor of the newest change: start after it to get only what comes next."""
    stamp(conn)
    row = conn.execute(_HEAD).fetchone()
    return Cursor(int(row[0]), int(row[1])) if row else START


async def aread_head(conn: psycopg.AsyncConnection[Any]) -> Cursor:
    """:func:`read_head` for asyncio."""
    await astamp(conn)
    row = await (await conn.execute(_HEAD)).fetchone()
    return Cursor(int(row[0]), int(row[1])) if row else START


def _params(after: Cursor, limit: int, topics: Sequence[str] | None) -> dict[str, Any]:
    return {"seq": after.seq, "id": after.id, "limit": limit, "topics": list(topics) if topics is not None else None}


def row_to_event(row: Mapping[str, Any], source: Source) -> ChangeEvent:
    """A row of ``supabase_push_changes()`` by name (PostgREST's JSON, parsed with exact numbers) as an
    event."""
    return rows_to_events([row], source)[0]


def rows_to_events(rows: Sequence[Mapping[str, Any]], source: Source) -> list[ChangeEvent]:
    """:func:`row_to_event` for a page. The changes of one transaction share their commit time, so its text
    is read once per run of them."""
    events: list[ChangeEvent] = []
    text: object = None
    committed_at: Any = None
    with collector_paused():
        for row in rows:
            if row["committed_at"] != text:
                text = row["committed_at"]
                committed_at = _commit_time(text)
            events.append(_event(row["seq"], row["id"], row["topic"], row["schema_name"], row["table_name"],
                                 row["op"], row["record"], row["old_record"], committed_at, source=source))
    return events


def _commit_time(value: object) -> Any:
    """A commit time as JSON writes it (ISO 8601) as a datetime; anything else as it is, for pydantic's reading
    of it to decide."""
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(value)
    return value


_OPERATIONS = frozenset(get_args(Operation))


def _event(seq: int, change_id: int, topic: str, schema_name: str, table_name: str, op: Operation, record: Any,
           old_record: Any, committed_at: datetime, *, source: Source) -> ChangeEvent:
    """One change as an event; the rows as JSON text (SQL) or parsed (PostgREST). A service's event (op
    EVENT) keeps its name where a change keeps its table (sql: supabase_push.publish); the envelope calls
    it ``event``.

    Values of the types the event holds are taken as they are, without pydantic's validation (a quarter
    of a long catch-up); anything else goes through it, which converts it or says what is wrong."""
    record, old_record = _row(record), _row(old_record)
    if (type(seq) is int and type(change_id) is int and type(topic) is str and type(schema_name) is str
            and type(table_name) is str and op in _OPERATIONS and (record is None or type(record) is dict)
            and (old_record is None or type(old_record) is dict) and type(committed_at) is datetime
            and committed_at.tzinfo is not None):
        return _typed_event(seq, change_id, topic, schema_name, table_name, op, record, old_record, committed_at,
                            source)
    published = op == "EVENT"
    return ChangeEvent.model_validate({
        "id": change_id, "cursor": Cursor(seq, change_id), "topic": topic, "schema_name": schema_name,
        "table": "" if published else table_name, "event": table_name if published else None, "op": op,
        "record": record, "old_record": old_record, "commit_ts": committed_at, "source": source})


_GIVEN = {"id", "cursor", "topic", "schema_name", "table", "op", "record", "old_record", "commit_ts", "source", "event"}
"""The fields a reader gives (pydantic's ``model_fields_set``); ``truncated`` and ``prev`` keep their defaults.
One set for every event a reader builds, never changed: a copy per event was a sixth of a catch-up's Python time,
mostly in the garbage collector."""


def _typed_event(seq: int, change_id: int, topic: str, schema_name: str, table_name: str, op: Operation,
                 record: dict[str, Any] | None, old_record: dict[str, Any] | None, committed_at: datetime,
                 source: Source, given: set[str] = _GIVEN) -> ChangeEvent:
    """An event from values each already of its field's type, without validation and without a copy: what
    pydantic's ``model_construct`` does, without its loop over the fields in Python (validation was a quarter
    of the time of a long catch-up). The fields go in their declared order, which repr shows. ``given``: the
    fields given, as pydantic records them, kept as it is (see ``_GIVEN``)."""
    published = op == "EVENT"
    event = _new(ChangeEvent)
    _set_dict(event, {
        "id": change_id, "cursor": _new_tuple(Cursor, (seq, change_id)), "topic": topic, "schema_name": schema_name,
        "table": "" if published else table_name, "op": op, "record": record, "old_record": old_record,
        "commit_ts": committed_at, "source": source, "truncated": False, "prev": None,
        "event": table_name if published else None})
    _set_fields_set(event, given)
    _set_extra(event, None)
    _set_private(event, None)
    return event


_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
"""Where Postgres counts a timestamp's microseconds from (its binary form)."""
_new = object.__new__
_new_tuple = tuple.__new__  # a Cursor of two ints, without NamedTuple's __new__ in Python
# BaseModel's slots, set through their own descriptors (object.__setattr__ looks each up by name first).
_set_dict = vars(BaseModel)["__dict__"].__set__
_set_fields_set = vars(BaseModel)["__pydantic_fields_set__"].__set__
_set_extra = vars(BaseModel)["__pydantic_extra__"].__set__
_set_private = vars(BaseModel)["__pydantic_private__"].__set__


def events_of_rows(rows: list[tuple[Any, ...]], source: Source) -> list[ChangeEvent]:
    """Rows of ``_READ`` (:func:`aexecute_read`) as events. The rows' JSON is parsed for the whole page at once
    (one C call where no number needs the exact parser), and each transaction's commit time (microseconds, see
    ``_rows_cursor``) becomes a datetime once. The other columns' SQL types (bigint, text) are the event's
    Python types already, so only the op, the rows' JSON and the commit time are checked (a fifth of a
    catch-up's time went to checking the rest); a row that fails any goes through :func:`_event`, which
    validates it."""
    events: list[ChangeEvent] = []
    append = events.append
    previous: object = None
    committed_at: Any = None
    typed_time = False
    with collector_paused():
        records = iter(_json.loads_each([row[6] for row in rows if row[6] is not None]))
        old_records = iter(_json.loads_each([row[7] for row in rows if row[7] is not None]))
        for seq, change_id, topic, schema_name, table_name, op, record_text, old_record_text, committed in rows:
            record = None if record_text is None else next(records)
            old_record = None if old_record_text is None else next(old_records)
            if committed != previous:
                previous = committed
                committed_at = _PG_EPOCH + timedelta(microseconds=committed) if type(committed) is int \
                    else _commit_time(committed)
                typed_time = type(committed_at) is datetime and committed_at.tzinfo is not None
            if typed_time and op in _OPERATIONS and (record is None or type(record) is dict) \
                    and (old_record is None or type(old_record) is dict):
                append(_typed_event(seq, change_id, topic, schema_name, table_name, op, record, old_record,
                                    committed_at, source))
            else:
                append(_event(seq, change_id, topic, schema_name, table_name, op, record_text, old_record_text,
                              committed_at, source=source))
    return events


def _row(value: Any) -> Any:
    return _json.loads(value, exact_numbers=True) if isinstance(value, str) else value


def fetch_change(conn: psycopg.Connection[Any], cursor: Cursor) -> ChangeEvent | None:
    """The one change at ``cursor``, e.g. for an event that arrived ``truncated``."""
    page = read_changes(conn, Cursor(cursor.seq, cursor.id - 1), limit=1, source="catch-up")
    return page[0] if page and page[0].cursor == cursor else None


@dataclass(frozen=True)
class SnapshotStart:
    """Where a snapshot of the routed tables stands: every change after ``cursor`` is not in its rows,
    except the ``skip`` ids (committed before the snapshot, given a cursor after it)."""

    cursor: Cursor
    skip: frozenset[int]
    taken_at: datetime

    def event(self, topic: str, schema: str, table: str, record: dict[str, Any] | None) -> ChangeEvent:
        """A row of this snapshot as an event (``record`` None: the snapshot starts again)."""
        return ChangeEvent(id=self.cursor.id, cursor=self.cursor, topic=topic, schema=schema, table=table,
                           op="SNAPSHOT", record=record, commit_ts=self.taken_at, source="snapshot")

    def events(self, topic: str, schema: str, table: str, records: Sequence[Any]) -> list[ChangeEvent]:
        """A page of one table's rows as events, built as the log's readers build theirs: a row (an object)
        taken as it is, anything else through :meth:`event`, which validates it."""
        if type(topic) is not str or type(schema) is not str or type(table) is not str \
                or type(self.taken_at) is not datetime or self.taken_at.tzinfo is None:
            return [self.event(topic, schema, table, record) for record in records]
        seq, change_id = self.cursor
        with collector_paused():
            return [_typed_event(seq, change_id, topic, schema, table, "SNAPSHOT", record, None, self.taken_at,
                                 "snapshot", _SNAPSHOT_GIVEN)
                    if type(record) is dict else self.event(topic, schema, table, record) for record in records]


_SNAPSHOT_GIVEN = {"id", "cursor", "topic", "schema_name", "table", "op", "record", "commit_ts", "source"}
"""The fields :meth:`SnapshotStart.event` gives, as pydantic records them (see ``_GIVEN``)."""


_SNAPSHOT_START = "SELECT seq, id, skip, tables, taken_at FROM public.supabase_push_snapshot_start(%s)"


async def aread_snapshot(conn: psycopg.AsyncConnection[Any], topics: Sequence[str] | None = None, *,
                         page_size: int = 1000) -> AsyncGenerator[SnapshotStart | list[ChangeEvent], None]:
    """The rows of the routed tables of ``topics``, as they are in one snapshot, with the cursor they stand at:
    first a :class:`SnapshotStart`, then pages of ``op == "SNAPSHOT"`` events (their ``record`` the row), read
    in one REPEATABLE READ transaction by a server-side cursor (memory stays bounded by two pages: each page is
    asked for before the one before it is built, so the server reads it meanwhile). The rows are read with the
    connection's rights (row-level security applies)."""
    await astamp(conn)  # fewer changes to skip
    async with conn.transaction():
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        cur = await conn.execute(_SNAPSHOT_START, (list(topics) if topics is not None else None,))
        row = await cur.fetchone()
        assert row is not None
        start = SnapshotStart(Cursor(int(row[0]), int(row[1])), frozenset(row[2]), row[4])
        yield start
        fetch = sql.SQL("FETCH FORWARD {} FROM supabase_push_snapshot").format(sql.Literal(page_size))

        def ask() -> asyncio.Task[psycopg.AsyncCursor[tuple[Any, ...]]]:
            return asyncio.ensure_future(_executed(conn.cursor(row_factory=tuple_row), fetch))

        for table in row[3]:
            await conn.execute(sql.SQL("DECLARE supabase_push_snapshot NO SCROLL CURSOR FOR "
                                       "SELECT pg_catalog.to_jsonb(t)::text FROM {}.{} t").format(
                sql.Identifier(table["schema"]), sql.Identifier(table["table"])))
            ahead = ask()
            try:
                while (page := await ahead).rowcount:
                    ahead = ask()
                    await until_sent(ahead)
                    try:
                        with collector_paused():  # see aevents_of
                            records = _json.loads_each([record for (record,) in await page.fetchall()])
                            events = start.events(table["topic"], table["schema"], table["table"], records)
                    finally:
                        await page.close()
                    yield events
                await (await ahead).close()
            finally:  # a reader that stopped early: its FETCH ends before the transaction does
                await drop(ahead)
            await conn.execute("CLOSE supabase_push_snapshot")
