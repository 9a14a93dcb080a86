"""Hosted Supabase with only the SQL installed: no supabase-push process stamps, the database's own
stamping loop does (what the pg_cron job of docs/supabase.md runs, here called from a plain session),
and browsers on supabase-js keep receiving every change of `position-updates`, once and in order, and the
events services publish there."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from supabase_push.local import LocalRealtime, ServerConfig

from .conftest import Cluster, set_up_as_supabase
from .realtime_helpers import JsAgent

WRITERS, UPDATES = 4, 40


@pytest.fixture
def sql_only(cluster: Cluster) -> Iterator[tuple[str, LocalRealtime]]:
    """A database set up as a Supabase project (the realtime schema, then our SQL) behind a local
    server that stands in for Supabase Realtime and stamps nothing itself."""
    name = cluster.create_database()
    url = cluster.url_for(name)
    with psycopg.connect(url, autocommit=True) as conn:
        set_up_as_supabase(conn)
    try:
        with LocalRealtime(url, ServerConfig(port=0, stamp=False)).in_thread() as server:
            yield url, server
    finally:
        cluster.drop_database(name)


def _update(url: str, position: int, commits: dict[tuple[int, int], float]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for n in range(1, UPDATES + 1):
            conn.execute("UPDATE positions SET quantity = %s WHERE id = %s", (n, position))
            commits[(position, n)] = time.monotonic()
            time.sleep(0.005)


async def test_supabase_js_receives_every_change_with_only_the_sql_stamping(
        sql_only: tuple[str, LocalRealtime]) -> None:
    url, server = sql_only
    with psycopg.connect(url, autocommit=True) as conn:
        ids = [row[0] for row in conn.execute(
            "INSERT INTO positions (symbol, quantity) SELECT 'P' || n, 0 FROM generate_series(1, %s) n RETURNING id",
            (WRITERS,)).fetchall()]
    agent = await JsAgent.start(server.url, server.service_role_key, "2.0.0")
    try:
        await agent.send(cmd="subscribe", name="position-updates", config={"private": True})
        await agent.subscribed("position-updates")

        def updates() -> list[dict[str, Any]]:
            return [e for e in agent.inbox.items
                    if e["type"] == "broadcast" and e["payload"]["event"] == "UPDATE"]

        commits: dict[tuple[int, int], float] = {}
        with psycopg.connect(url, autocommit=True) as conn:  # nobody stamps yet: nothing may arrive
            conn.execute("UPDATE positions SET quantity = 0 WHERE id = %s", (ids[0],))
        await asyncio.sleep(1.0)
        assert updates() == [], "a change was pushed though nothing stamps"

        loop = psycopg.connect(url, autocommit=True)
        stamping = asyncio.create_task(asyncio.to_thread(
            loop.execute, "CALL supabase_push.stamp_loop_v2(30, 1, 50, NULL)"))  # the pg_cron job's body
        try:
            writers = [threading.Thread(target=_update, args=(url, position, commits)) for position in ids]
            for thread in writers:
                thread.start()
            arrived: dict[tuple[int, int], float] = {}
            deadline = time.monotonic() + 20
            while True:  # note each arrival before looking whether all are in, so the last ones count too
                for event in updates():
                    record = event["payload"]["payload"]["record"]
                    arrived.setdefault((record["id"], int(record["quantity"])), time.monotonic())
                if len(updates()) >= WRITERS * UPDATES + 1 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.002)
            for thread in writers:
                thread.join()
            with psycopg.connect(url, autocommit=True) as conn:  # a durable event, as a service publishes it
                conn.execute("SELECT supabase_push.publish('position-updates', 'risk-limit', %s, 'limit-1')",
                             ('{"limit": 5000, "user_id": "u1"}',))
            async with asyncio.timeout(10):
                while not (published := [e for e in agent.inbox.items
                                         if e["type"] == "broadcast" and e["payload"]["event"] == "risk-limit"]):
                    await asyncio.sleep(0.01)
        finally:
            loop.cancel_safe()
            with contextlib.suppress(psycopg.errors.QueryCanceled):
                await asyncio.wait_for(stamping, 5)
            loop.close()

        got = [event["payload"]["payload"]["record"] for event in updates()]
        assert len(got) == WRITERS * UPDATES + 1, f"{len(got)} of {WRITERS * UPDATES + 1} changes arrived"
        assert got[0]["id"] == ids[0] and int(got[0]["quantity"]) == 0  # the one written before the loop
        for position in ids:
            seen = [int(r["quantity"]) for r in got if r["id"] == position and (r is not got[0])]
            assert seen == list(range(1, UPDATES + 1)), f"position {position}: {seen}"
        [event] = published  # supabase-js hears it under its own name: channel.on('broadcast', {event: 'risk-limit'})
        envelope = event["payload"]["payload"]
        assert envelope["op"] == "EVENT" and envelope["event"] == "risk-limit" and envelope["table"] == ""
        assert envelope["record"] == {"limit": 5000, "user_id": "u1"}
        delays = [arrived[key] - commits[key] for key in commits if key in arrived]
        print(f"commit to supabase-js, SQL-only stamping: p50 {statistics.median(delays) * 1000:.1f} ms, "
              f"max {max(delays) * 1000:.1f} ms over {len(delays)} changes")
    finally:
        await agent.close()
