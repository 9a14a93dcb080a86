"""Push through Postgres LISTEN/NOTIFY (psycopg 3)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Literal

import psycopg
from psycopg import sql

from ..db import aconnect, describe_dsn, map_error
from ..errors import DatabaseError, TransportError
from .readers import transport_error
from .transports import Emit, Up, parse_push

__all__ = ["ListenTransport"]


class ListenTransport:
    name: Literal["listen"] = "listen"

    def __init__(self, database_url: str, *, liveness_interval: float = 10.0) -> None:
        self._dsn = database_url
        self.liveness_interval = liveness_interval

    def describe(self) -> str:
        return f"LISTEN at {describe_dsn(self._dsn)}"

    async def run(self, topics: Sequence[str], emit: Emit, up: Up) -> None:
        try:
            conn = await aconnect(self._dsn)
        except DatabaseError as exc:
            raise transport_error(exc, exc.message, exc.hint) from None
        try:
            for topic in topics:
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(topic)))
            await up()
            while True:
                # aclosing: an abandoned notifies() generator keeps the connection's lock, and close() waits forever
                async with contextlib.aclosing(conn.notifies(timeout=self.liveness_interval)) as notes:
                    async for note in notes:
                        await emit(parse_push(note.payload, carries_rows=False))
                # Quiet for a while: make sure the server is still there (a half-open socket is silent).
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation.
                async with asyncio.timeout(self.liveness_interval):
                    await conn.execute("SELECT 1")
        except TimeoutError:
            raise TransportError(f"{self.describe()}: no answer within {self.liveness_interval:g} s") from None
        except psycopg.Error as exc:
            raise TransportError(f"{self.describe()}: {map_error(exc, self._dsn).message}") from None
        finally:
            await conn.close()
