"""What the local server asks Postgres: setup, type names, publication tables, and the
RLS probes on ``realtime.messages`` that authorize private channels, as Supabase does."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import psycopg
from psycopg import sql

from .._sql import read_sql
from ..errors import ConfigError
from .footprint import LOCAL_REALTIME_SQL, SEND
from .pgoutput import TypeInfo

log = logging.getLogger("supabase_push.local")

PUBLICATION = "supabase_realtime"
MESSAGES_PUBLICATION = "supabase_realtime_messages_publication"
VISIBILITY_WAIT = 5.0  # seconds a decoded transaction may take to become visible before its checks go ahead

# Whether the transaction of a 32-bit xid (as decoding gives it) is visible to a new snapshot: its full xid is
# the one just below the snapshot's xmax with those low 32 bits.
_VISIBLE = (
    "SELECT pg_catalog.pg_visible_in_snapshot("
    "(x - ((x %% 4294967296 - %s + 4294967296) %% 4294967296))::text::xid8, s)"
    " FROM (SELECT s, pg_catalog.pg_snapshot_xmax(s)::text::bigint AS x FROM pg_catalog.pg_current_snapshot() s) q")


class Database:
    """One control connection (a lock makes its transactions take turns)."""

    def __init__(self, conninfo: str, *, install: bool = True) -> None:
        self._conninfo = conninfo
        self._install = install
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._lock = asyncio.Lock()
        self.types: dict[int, TypeInfo] = {}

    async def open(self) -> None:
        self._conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
        if self._install:
            await self._conn.execute(read_sql(LOCAL_REALTIME_SQL))
        else:
            cur = await self._conn.execute("SELECT pg_catalog.to_regprocedure(%s) IS NOT NULL", (SEND,))
            if (await cur.fetchone()) != (True,):
                await self.close()
                raise ConfigError("this database has no realtime schema and the server was told not to add one",
                                  hint="supabase-push serve --install-realtime adds it (and says what it adds)")
        await self.load_types()

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    @property
    def conn(self) -> psycopg.AsyncConnection[Any]:
        assert self._conn is not None, "Database.open() first"
        return self._conn

    async def load_types(self) -> None:
        async with self._lock:
            cur = await self.conn.execute("SELECT oid::int, typname, typcategory, typelem::int FROM pg_catalog.pg_type")
            self.types = {oid: TypeInfo(name, category, elem) for oid, name, category, elem in await cur.fetchall()}

    async def maintain_partitions(self) -> None:
        async with self._lock:
            await self.conn.execute("SELECT realtime.maintain_message_partitions()")

    async def keep_partitions(self, every: float = 3600) -> None:
        """Until cancelled: realtime.messages' daily partitions made ahead and dropped behind, every ``every`` s."""
        while True:
            await asyncio.sleep(every)
            try:
                await self.maintain_partitions()
            except Exception as exc:
                log.warning("could not maintain realtime.messages partitions: %s", exc)

    async def published_columns(self) -> dict[tuple[str, str], set[str]]:
        """The tables of publication supabase_realtime, each with its column names."""
        async with self._lock:
            cur = await self.conn.execute(
                "SELECT schemaname, tablename, array_agg(a.attname::text) FROM pg_catalog.pg_publication_tables t"
                " JOIN pg_catalog.pg_attribute a ON a.attrelid = format('%%I.%%I', schemaname, tablename)::regclass"
                " AND a.attnum > 0 AND NOT a.attisdropped"
                " WHERE t.pubname = %s GROUP BY 1, 2", (PUBLICATION,))
            return {(schema, table): set(columns) for schema, table, columns in await cur.fetchall()}

    async def can_read(self, claims: dict[str, Any], topic: str, extensions: list[str]) -> dict[str, bool]:
        """Which extensions (broadcast, presence) of a private topic the claims' role may read:
        probe rows are inserted, then selected under the role, then rolled back."""
        async with self._lock, self.conn.transaction(force_rollback=True):
            ids = {}
            for extension in extensions:
                cur = await self.conn.execute(
                    "INSERT INTO realtime.messages (topic, extension, private) VALUES (%s, %s, true) RETURNING id",
                    (topic, extension))
                row = await cur.fetchone()
                assert row is not None
                ids[row[0]] = extension
            if not await self._assume(claims, topic):
                return dict.fromkeys(extensions, False)
            cur = await self.conn.execute("SELECT id FROM realtime.messages WHERE id = ANY(%s)", (list(ids),))
            visible = {ids[row[0]] for row in await cur.fetchall()}
            return {extension: extension in visible for extension in extensions}

    async def can_write(self, claims: dict[str, Any], topic: str, extension: str = "broadcast") -> bool:
        """Whether the claims' role may insert a message on a private topic (then rolled back). Checked for every
        request, as Supabase's REST broadcast does, in three round trips (no savepoints: the transaction is
        rolled back whatever happens)."""
        async with self._lock, self.conn.transaction(force_rollback=True):
            if not await self._assume(claims, topic):
                return False
            try:
                await self.conn.execute(
                    "INSERT INTO realtime.messages (topic, extension, private) VALUES (%s, %s, true)",
                    (topic, extension))
            except psycopg.errors.InsufficientPrivilege:
                return False
            return True

    async def row_security(self, oid: int) -> tuple[str, ...] | None:
        """The primary key's columns of a table with row level security on, else None (no check needed)."""
        async with self._lock:
            cur = await self.conn.execute(
                "SELECT array(SELECT a.attname::text FROM pg_catalog.pg_index i"
                " JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
                " WHERE i.indrelid = c.oid AND i.indisprimary ORDER BY a.attnum)"
                " FROM pg_catalog.pg_class c WHERE c.oid = %s AND c.relrowsecurity", (oid,))
            row = await cur.fetchone()
        return tuple(row[0]) if row is not None else None

    async def until_visible(self, xid: int, timeout: float = VISIBILITY_WAIT) -> bool:
        """Wait until the transaction ``xid`` is visible to this connection's queries; False after ``timeout``.
        Decoding streams a commit once its record is flushed, a moment before the transaction becomes visible (or
        longer: while its backend waits for a synchronous standby); an RLS check in between would not find an
        inserted row, or would read an updated one as it was."""
        deadline = time.monotonic() + timeout
        pause = 0.0002
        while True:
            async with self._lock:
                cur = await self.conn.execute(_VISIBLE, (xid,))
                if await cur.fetchone() == (True,):
                    return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.05)

    async def row_visible(self, claims: dict[str, Any], schema: str, table: str, key: dict[str, Any]) -> bool:
        """Whether the claims' role may select the row with this primary key now, under its RLS
        policies: how Supabase Realtime decides who gets an INSERT or UPDATE of a table with RLS."""
        async with self._lock, self.conn.transaction(force_rollback=True):
            if not await self._assume(claims, ""):
                return False
            where = sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(column)) for column in key)
            query = sql.SQL("SELECT 1 FROM {}.{} WHERE {}").format(sql.Identifier(schema), sql.Identifier(table), where)
            try:
                cur = await self.conn.execute(query, list(key.values()))
                return await cur.fetchone() is not None
            except psycopg.Error as exc:  # no privilege on the table, or a value the key's type refuses
                log.debug("RLS check on %s.%s as %s: %s", schema, table, claims.get("role"), exc)
                return False

    async def _assume(self, claims: dict[str, Any], topic: str) -> bool:
        """The claims' role and the claims as Supabase exposes them (``auth.uid()``, ``realtime.topic()``), for the
        rest of this transaction, in one statement; False (the transaction aborted) if the role cannot be taken.
        ``set_config('role', ...)`` is ``SET LOCAL ROLE``, except that it reads ``none`` as the session's own role,
        which no token may have."""
        role = str(claims["role"])
        if role == "none":
            log.info("role %r from a JWT cannot be assumed", role)
            return False
        try:
            await self.conn.execute(
                "SELECT set_config('role', %s, true), set_config('realtime.topic', %s, true),"
                " set_config('request.jwt.claims', %s, true), set_config('request.jwt.claim.sub', %s, true),"
                " set_config('request.jwt.claim.role', %s, true)",
                (role, topic, json.dumps(claims), str(claims.get("sub", "")), role))
        except (psycopg.errors.InvalidParameterValue, psycopg.errors.InsufficientPrivilege) as exc:
            log.info("role %r from a JWT cannot be assumed: %s", role, exc)
            return False
        return True
