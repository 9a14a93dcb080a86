"""Helpers for the relay tests: a relay on a free port, user tokens, and an SSE client on httpx."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import psycopg

from supabase_push.config import Settings
from supabase_push.relay import Authenticator, Policy, RelayConfig, SseEvent, SseParser, create_app
from supabase_push.relay.server import RelayServer

SECRET = "relay-test-secret-with-at-least-32-bytes"
TOPICS = ["position-updates", "trade-updates", "portfolio-updates"]
ALICE, BOB = str(uuid.UUID(int=1)), str(uuid.UUID(int=2))


def token(sub: str | None, *, tier: str | None = None, role: str = "authenticated", ttl: float = 3600,
          secret: str = SECRET, **claims: Any) -> str:
    now = int(time.time())
    body: dict[str, Any] = {"role": role, "iat": now, "exp": now + int(ttl), **claims}
    if sub is not None:
        body["sub"] = sub
    if tier is not None:
        body["app_metadata"] = {"tier": tier}
    return jwt.encode(body, secret, algorithm="HS256")


ADMIN = token(None, role="service_role")


@contextlib.asynccontextmanager
async def relay(dsn: str, *, policy: Policy | None = None, authenticator: Authenticator | None = None,
                **options: Any) -> AsyncIterator[RelayServer]:
    config = RelayConfig(settings=Settings(database_url=dsn), policy=policy or Policy(topics=TOPICS),
                         authenticator=authenticator or Authenticator(secret=SECRET),
                         transport=options.pop("transport", "listen"),
                         subscriber_options={"liveness_interval": 2}, **options)
    async with RelayServer(create_app(config), port=0) as server:
        yield server


class SseStream:
    """``async with SseStream(url, token) as s: await s.take(3)``: one /events stream, parsed as it comes."""

    def __init__(self, base: str, token: str | None, *, topics: str | None = None, last_id: str | None = None,
                 query_token: bool = False, start: str | None = None) -> None:
        params: dict[str, str] = {}
        headers: dict[str, str] = {}
        if topics:
            params["topics"] = topics
        if start:
            params["start"] = start
        if token and query_token:
            params["access_token"] = token
        elif token:
            headers["Authorization"] = f"Bearer {token}"
        if last_id:
            headers["Last-Event-ID"] = last_id
        self._request = (f"{base}/events", params, headers)
        self.parser = SseParser()
        self.events: asyncio.Queue[SseEvent] = asyncio.Queue()
        self.status: int | None = None
        self.error: dict[str, Any] | None = None
        self.ended = asyncio.Event()
        self._opened = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> SseStream:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._opened.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        url, params, headers = self._request
        try:
            async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as client, \
                    client.stream("GET", url, params=params, headers=headers) as response:
                self.status = response.status_code
                if response.status_code != 200:
                    self.error = json.loads(await response.aread())
                    return
                self._opened.set()
                async for chunk in response.aiter_raw():
                    for event in self.parser.feed(chunk):
                        self.events.put_nowait(event)
        except httpx.HTTPError:
            pass
        finally:
            self._opened.set()
            self.ended.set()

    async def take(self, count: int, timeout: float = 20) -> list[SseEvent]:
        got: list[SseEvent] = []
        async with asyncio.timeout(timeout):
            while len(got) < count:
                got.append(await self.events.get())
        return got

    async def quiet(self, seconds: float = 0.5) -> list[SseEvent]:
        """What arrives in the next ``seconds`` (to show that nothing more does)."""
        await asyncio.sleep(seconds)
        got: list[SseEvent] = []
        while not self.events.empty():
            got.append(self.events.get_nowait())
        return got


def insert_trades(dsn: str, owners: list[str], symbol: str = "SSE", order_id: str | None = None) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for owner in owners:
            conn.execute("INSERT INTO trades (user_id, symbol, side, quantity, price, order_id) "
                         "VALUES (%s, %s, 'buy', 1, 100, %s)", (owner, symbol, order_id))


def cursors_of(dsn: str, owner: str | None = None, topics: list[str] = TOPICS, after: str = "0:0") -> list[str]:
    """The change log's truth: cursors of changes (to rows of ``owner``) after ``after``."""
    from supabase_push.changelog import read_changes
    from supabase_push.events import Cursor

    with psycopg.connect(dsn, autocommit=True) as conn:
        events = read_changes(conn, Cursor.parse(after), limit=1_000_000, topics=topics)
    return [str(e.cursor) for e in events
            if owner is None or ((e.old_record if e.op == "DELETE" else e.record) or {}).get("user_id") == owner]


def data(event: SseEvent) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(event.data)
    return parsed


async def stats_of(server: RelayServer) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{server.url}/stats", headers={"Authorization": f"Bearer {ADMIN}"})
    response.raise_for_status()
    stats: dict[str, Any] = response.json()
    return stats
