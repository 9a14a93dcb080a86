"""Broadcast with Postgres NOTIFY, for self-hosted setups without Supabase.

A message goes out on the channel named after its topic as
``{"type":"broadcast","event":...,"payload":...,"meta":{"id":...}}``, the shape Realtime
delivers broadcasts in. The id keeps two identical messages in one batch apart: Postgres
collapses identical notifications of one transaction.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence

import psycopg

from ..db import aconnect, describe_dsn, map_error
from ..errors import ConnectError, DeliveryError
from .backends import TransientError
from .message import Message

__all__ = ["NOTIFY_LIMIT", "NotifyBackend", "notification"]

NOTIFY_LIMIT = 7999  # bytes: Postgres refuses a payload of 8000 or more
_ENVELOPE_ROOM = 200  # topic-independent part of the envelope, and the id


def notification(message: Message) -> str:
    """The NOTIFY payload of a message."""
    event, payload = json.dumps(message.event), message.body.decode()
    return f'{{"type":"broadcast","event":{event},"payload":{payload},"meta":{{"id":"{uuid.uuid4()}"}}}}'


class NotifyBackend:
    name: str = "notify"
    max_batch: int = 500
    max_payload_bytes: int | None = NOTIFY_LIMIT - _ENVELOPE_ROOM
    max_payload_reason: str | None = (
        "Postgres NOTIFY carries under 8,000 bytes, envelope included, and no setting raises that: send an id "
        "and let subscribers read the row, or broadcast through Supabase Realtime (SUPABASE_URL and a key)")

    def __init__(self, database_url: str, *, timeout: float = 5.0) -> None:
        self._dsn = database_url
        self.timeout = timeout
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None

    def describe(self) -> str:
        return f"Postgres NOTIFY at {describe_dsn(self._dsn)}"

    async def connect(self) -> None:
        if self._conn is None or self._conn.closed:
            self._conn = await aconnect(self._dsn)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def send(self, batch: Sequence[Message]) -> None:
        channels, payloads = [m.topic for m in batch], [notification(m) for m in batch]
        for message, payload in zip(batch, payloads, strict=True):
            if len(payload.encode()) > NOTIFY_LIMIT:
                raise DeliveryError(f"NOTIFY payload for {message.topic}/{message.event} is over {NOTIFY_LIMIT} bytes")
        try:
            await self.connect()
            assert self._conn is not None
            # One statement, one transaction: the batch is delivered whole, in order, or not at all.
            async with asyncio.timeout(self.timeout):  # not wait_for: it can swallow a cancellation (3.11)
                await self._conn.execute(
                    "SELECT pg_catalog.pg_notify(c, p) FROM unnest(%s::text[], %s::text[]) AS t(c, p)",
                    (channels, payloads))
        except TimeoutError:
            await self.close()
            raise TransientError(f"no answer from {self.describe()} within {self.timeout:g} s", timeout=True) from None
        except psycopg.OperationalError as exc:
            await self.close()
            raise TransientError(str(map_error(exc, self._dsn))) from None
        except ConnectError as exc:  # from connect(): the server is down or unreachable
            raise TransientError(exc.message) from None
        except psycopg.Error as exc:
            raise DeliveryError(str(map_error(exc, self._dsn))) from None
        # AuthenticationError and ConfigError from connect() are not worth a retry: they propagate.
