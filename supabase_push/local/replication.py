"""Stream logical decoding (``pgoutput``) over the replication protocol with psycopg 3.

psycopg's ``copy()`` refuses COPY_BOTH, so this drives libpq directly (``conn.pgconn``),
never blocking: the event loop wakes when the socket is readable and drains every buffered
frame. The slot is TEMPORARY: it disappears with the connection, so a stopped server
retains no WAL. Each processed commit is confirmed at once, and at least every second, so
the slot also retains little WAL while running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections.abc import Callable

import psycopg
from psycopg import pq

from .pgoutput import Decoder, Transaction

log = logging.getLogger("supabase_push.local")

PG_EPOCH_UNIX = 946_684_800  # 2000-01-01 in Unix seconds
FEEDBACK_INTERVAL = 1.0


class ReplicationError(Exception):
    """The replication connection failed or the stream ended."""


def _pg_now() -> int:
    return int((time.time() - PG_EPOCH_UNIX) * 1_000_000)


class ReplicationStream:
    """One upstream reader per server: every committed transaction goes to ``on_transaction``."""

    def __init__(self, conninfo: str, slot: str, publications: list[str],
                 on_transaction: Callable[[Transaction], None]) -> None:
        self._conninfo = conninfo
        self._slot = slot
        self._publications = publications
        self._on_transaction = on_transaction
        self._conn: psycopg.AsyncConnection[object] | None = None
        self._decoder = Decoder()
        self._confirmed = 0
        self._received = 0
        self._closed = asyncio.Event()
        self.error: BaseException | None = None
        self._feedback_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._conn = await psycopg.AsyncConnection.connect(
            self._conninfo, autocommit=True, replication="database",
            options="-c TimeZone=UTC -c DateStyle=ISO,MDY -c extra_float_digits=1")
        pgconn = self._conn.pgconn
        try:
            await self._command(f'CREATE_REPLICATION_SLOT "{self._slot}" TEMPORARY LOGICAL pgoutput')
            names = ",".join(self._publications)
            await self._command(
                f"START_REPLICATION SLOT \"{self._slot}\" LOGICAL 0/0 "
                f"(proto_version '1', publication_names '{names}')", expect=pq.ExecStatus.COPY_BOTH)
        except BaseException:
            await self.close()
            raise
        loop = asyncio.get_running_loop()
        loop.add_reader(pgconn.socket, self._on_readable)
        self._feedback_task = asyncio.create_task(self._feedback_loop())
        self._on_readable()  # frames may already be buffered

    async def close(self) -> None:
        if self._conn is None:
            return
        conn, self._conn = self._conn, None
        if self._feedback_task:
            self._feedback_task.cancel()
        with contextlib.suppress(OSError, psycopg.OperationalError):
            asyncio.get_running_loop().remove_reader(conn.pgconn.socket)
        await conn.close()
        self._closed.set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def _command(self, sql: str, expect: pq.ExecStatus = pq.ExecStatus.TUPLES_OK) -> None:
        assert self._conn is not None
        pgconn = self._conn.pgconn
        pgconn.send_query(sql.encode())
        while pgconn.flush():
            await self._wait(pgconn.socket, write=True)
        while True:
            pgconn.consume_input()
            if not pgconn.is_busy():
                break
            await self._wait(pgconn.socket)
        result = pgconn.get_result()
        if result is None or result.status not in (expect, pq.ExecStatus.COMMAND_OK):
            message = (result.error_message if result else pgconn.error_message).decode(errors="replace")
            raise ReplicationError(f"{sql.split()[0]} failed: {message.strip()}")
        if expect != pq.ExecStatus.COPY_BOTH:
            while pgconn.get_result() is not None:
                pass

    @staticmethod
    async def _wait(fd: int, write: bool = False) -> None:
        loop = asyncio.get_running_loop()
        ready = loop.create_future()
        add, remove = (loop.add_writer, loop.remove_writer) if write else (loop.add_reader, loop.remove_reader)
        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        add(fd, wake)
        try:
            await ready
        finally:
            remove(fd)

    def _on_readable(self) -> None:
        if self._conn is None:
            return
        pgconn = self._conn.pgconn
        try:
            pgconn.consume_input()
            while True:
                size, data = pgconn.get_copy_data(1)
                if size == 0:
                    return
                if size < 0:
                    raise ReplicationError(f"replication stream ended: {pgconn.error_message.decode(errors='replace')}")
                self._handle(bytes(data))
        except Exception as exc:  # the stream is dead: report once, stop reading
            log.error("logical decoding stream failed: %s", exc)
            self.error = exc
            asyncio.get_running_loop().create_task(self.close())

    def _handle(self, data: bytes) -> None:
        tag = data[:1]
        if tag == b"w":
            (_start, wal_end) = struct.unpack_from("!QQ", data, 1)
            transaction = self._decoder.feed(data[25:])
            if transaction is not None:
                self._confirmed = max(self._confirmed, transaction.end_lsn)
                self._on_transaction(transaction)
                self._send_feedback()
            self._received = max(self._received, wal_end)
        elif tag == b"k":
            (wal_end, _ts, reply) = struct.unpack_from("!QqB", data, 1)
            self._received = max(self._received, wal_end)
            if reply:
                self._send_feedback()

    def _send_feedback(self) -> None:
        if self._conn is None:
            return
        # Between transactions everything received is processed; inside one, only the last commit.
        lsn = self._confirmed if self._decoder.in_transaction else max(self._confirmed, self._received)
        message = b"r" + struct.pack("!QQQqB", lsn, lsn, lsn, _pg_now(), 0)  # 0: no reply wanted
        pgconn = self._conn.pgconn
        pgconn.put_copy_data(message)
        pgconn.flush()

    async def _feedback_loop(self) -> None:
        while self._conn is not None:
            await asyncio.sleep(FEEDBACK_INTERVAL)
            try:
                self._send_feedback()
            except psycopg.Error as exc:
                log.error("replication feedback failed: %s", exc)
                self.error = exc
                await self.close()
