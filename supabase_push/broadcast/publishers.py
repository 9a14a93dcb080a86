"""Durable events: ``supabase_push.publish`` appends an event to the change log, in a transaction.

A broadcast is at most once; a published event is a change like a row's (op ``EVENT``): ordered,
pushed, read by cursor, delivered exactly once. Call :func:`publish` (or :func:`apublish`) with your
own psycopg connection to publish inside your transaction, so that your rows and the event that
announces them commit together (the outbox); :meth:`Broadcaster.publish` publishes on its own
connection, over SQL or PostgREST RPC (the service role on hosted Supabase).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any, Protocol

import httpx
import psycopg
from pydantic import BaseModel

from .._http import retry_after
from ..config import Settings, api_key_headers, scrub
from ..db import aconnect, describe_dsn, map_error
from ..errors import (
    ConfigError,
    ConnectError,
    DeliveryError,
    DuplicateKeyError,
    PayloadError,
    PayloadTooLargeError,
    SchemaError,
    SupabasePushError,
)
from .backends import TransientError
from .message import encode_payload

__all__ = ["MAX_EVENT_BYTES", "Publisher", "RestPublisher", "SqlPublisher", "apublish", "event_body", "publish",
           "publisher_from_settings"]

MAX_EVENT_BYTES = 262_144
"""The largest payload an event may carry (its JSON text; sql: supabase_push.publish)."""

_PUBLISH = "SELECT supabase_push.publish(%s, %s, %s::jsonb, %s)"


def publish(conn: psycopg.Connection[Any], topic: str, event: str, payload: Mapping[str, Any] | BaseModel, *,
            key: str | None = None) -> int:
    """Append an event to the change log in ``conn``'s transaction (or on its own, on an autocommit
    connection): it is delivered when that commits, never if it rolls back. ``key`` makes a retry
    harmless (the same key and event is one event). Returns the change id."""
    body = event_body(payload)
    try:
        row = conn.execute(_PUBLISH, (topic, event, body, key)).fetchone()
    except psycopg.Error as exc:
        raise _sql_error(exc) from None
    assert row is not None
    return int(row[0])


async def apublish(conn: psycopg.AsyncConnection[Any], topic: str, event: str,
                   payload: Mapping[str, Any] | BaseModel, *, key: str | None = None) -> int:
    """:func:`publish` for asyncio."""
    body = event_body(payload)
    try:
        row = await (await conn.execute(_PUBLISH, (topic, event, body, key))).fetchone()
    except psycopg.Error as exc:
        raise _sql_error(exc) from None
    assert row is not None
    return int(row[0])


class Publisher(Protocol):
    """Where :meth:`Broadcaster.publish` sends events: ``publish`` takes the payload as JSON text. It raises
    :class:`TransientError` when a retry is safe and may succeed: nothing reached the server, or the event
    has a key (a retry of a published key is the same event)."""

    def describe(self) -> str: ...

    async def publish(self, topic: str, event: str, body: str, key: str | None) -> int: ...

    async def close(self) -> None: ...


class SqlPublisher:
    """Events over one autocommit connection, opened on first use and again after it fails."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._lock = asyncio.Lock()

    def describe(self) -> str:
        return f"SQL at {describe_dsn(self._dsn)}"

    async def publish(self, topic: str, event: str, body: str, key: str | None) -> int:
        async with self._lock:
            if self._conn is None or self._conn.closed:
                try:
                    self._conn = await aconnect(self._dsn)
                except ConnectError as exc:  # nothing was sent
                    raise TransientError(exc.message) from None
            try:
                row = await (await self._conn.execute(_PUBLISH, (topic, event, body, key))).fetchone()
            except psycopg.OperationalError as exc:
                await self._drop()
                raise _lost(key, map_error(exc, self._dsn).message) from None
            except psycopg.Error as exc:
                raise _sql_error(exc, self._dsn) from None
        assert row is not None
        change_id: Any = row[0]
        return int(change_id)

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def close(self) -> None:
        async with self._lock:
            await self._drop()


class RestPublisher:
    """``POST <rest_url>/rpc/supabase_push_publish`` with the service role's key."""

    def __init__(self, rest_url: str, key: str, *, timeout: float = 10.0) -> None:
        self.rest_url = rest_url.rstrip("/")
        self._key = key
        headers = {**api_key_headers(key), "Accept": "application/json", "Content-Type": "application/json"}
        self._http = httpx.AsyncClient(base_url=self.rest_url, headers=headers, timeout=timeout)

    def describe(self) -> str:
        return f"PostgREST at {self.rest_url}"

    async def publish(self, topic: str, event: str, body: str, key: str | None) -> int:
        params = f'{{"topic":{_quote(topic)},"event":{_quote(event)},"payload":{body},"key":{_quote(key)}}}'
        try:
            response = await self._http.post("/rpc/supabase_push_publish", content=params.encode())
        except httpx.ConnectError as exc:  # nothing was sent
            raise TransientError(f"cannot reach {self.describe()}: {self._scrub(exc)}") from None
        except httpx.HTTPError as exc:
            raise _lost(key, f"{self.describe()}: {self._scrub(exc)}",
                        timeout=isinstance(exc, httpx.TimeoutException)) from None
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if response.is_success and isinstance(answer, int) and not isinstance(answer, bool):
            return answer
        error = answer if isinstance(answer, dict) else {}
        code = str(error.get("code") or "")
        message = self._scrub(error.get("message") or response.reason_phrase)
        mapped = _by_code(code, message, error.get("hint"))
        if mapped is not None:
            raise mapped
        # 429 and 503: refused before it ran; other 5xx: a retry is safe only with a key
        if response.status_code in (429, 503) or (response.status_code >= 500 and key is not None):
            raise TransientError(f"{self.describe()} answered {response.status_code} {message}",
                                     status=response.status_code,
                                     retry_after=retry_after(response.headers.get("retry-after")))
        if code in ("PGRST202", "42883"):
            raise SchemaError(f"{self.describe()} has no supabase_push_publish(): {message}",
                              hint="run `supabase-push apply` (schema 3 adds it)")
        raise DeliveryError(f"{self.describe()} refused the event: {response.status_code} {code} {message}".rstrip(),
                            status=response.status_code,
                            hint="publishing needs the service role key (SUPABASE_SERVICE_ROLE_KEY)"
                            if response.status_code in (401, 403) or code == "42501" else None)

    def _scrub(self, text: object) -> str:
        return scrub(str(text) or type(text).__name__, [self._key])

    async def close(self) -> None:
        await self._http.aclose()


def publisher_from_settings(settings: Settings, *, timeout: float = 10.0) -> Publisher | None:
    """SQL when DATABASE_URL is set, else PostgREST with the service role key; None when neither is."""
    if settings.database_url:
        return SqlPublisher(settings.database_url)
    if settings.supabase_url and settings.service_role_key:
        return RestPublisher(f"{settings.supabase_url}/rest/v1", settings.service_role_key, timeout=timeout)
    return None


NOT_CONFIGURED = ConfigError(
    "nothing to publish events through: publishing needs DATABASE_URL, or SUPABASE_URL with "
    "SUPABASE_SERVICE_ROLE_KEY", hint="set one, or publish in your own transaction: supabase_push.publish(conn, ...)")


def event_body(payload: Mapping[str, Any] | BaseModel) -> str:
    """The payload as the JSON text an event carries, checked in the caller (nothing is sent otherwise)."""
    _, body = encode_payload(payload)
    if len(body) > MAX_EVENT_BYTES:
        raise PayloadTooLargeError(f"the payload is {len(body):,} bytes, over the {MAX_EVENT_BYTES:,} an event may "
                                   "carry; nothing was published",
                                   hint="publish a reference (an id to read the rest from) rather than the data")
    return body.decode()


def _quote(text: str | None) -> str:
    return json.dumps(text)


def _by_code(code: str | None, message: str, hint: object) -> SupabasePushError | None:
    """The error for what ``supabase_push.publish`` refused (its SQLSTATE), or None."""
    text = message.removeprefix("supabase_push: ")
    hint_text = str(hint) if hint else None
    if code == "54000":
        return PayloadTooLargeError(text + "; nothing was published", hint=hint_text)
    if code == "23505":
        return DuplicateKeyError(text + "; nothing was published", hint=hint_text)
    if code == "22023":
        return PayloadError(text + "; nothing was published", hint=hint_text)
    return None


def _sql_error(exc: psycopg.Error, dsn: str | None = None) -> SupabasePushError:
    mapped = _by_code(exc.sqlstate, exc.diag.message_primary or str(exc), exc.diag.message_hint)
    if mapped is not None:
        return mapped
    if isinstance(exc, psycopg.errors.UndefinedFunction):
        return SchemaError("this database has no supabase_push.publish()",
                           hint="run `supabase-push apply` (schema 3 adds it)")
    return map_error(exc, dsn)


def _lost(key: str | None, what: str, *, timeout: bool = False) -> Exception:
    """The connection failed while the event was on its way: it may or may not have been published. With
    a key a retry is the same event; without one, retrying could publish it twice."""
    if key is None:
        return DeliveryError(f"the connection failed while publishing ({what}): the event may have been "
                             "published or not", hint="publish with a key to make a retry safe")
    return TransientError(f"the connection failed while publishing ({what})", timeout=timeout)
