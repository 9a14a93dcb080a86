"""Hosted Supabase with only the SQL installed: no supabase-push process stamps, the database's own
stamping loop does (the pg_cron job of docs/supabase.md, scheduled in a cluster that runs pg_cron, and
the same loop called from a plain session), and browsers on supabase-js keep receiving every change of
`position-updates`, once and in order, and the events services publish there."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest

from supabase_push.embedded import LocalPostgres
from supabase_push.local import LocalRealtime, ServerConfig
from supabase_push.local.stack import prepare

from .conftest import Cluster
from .realtime_helpers import JsAgent

WRITERS, UPDATES = 4, 40
# docs/supabase.md's job, as a user pastes it into the SQL editor.
CRON_JOB = "select cron.schedule('supabase-push-stamper', '* * * * *', 'CALL supabase_push.stamp_loop_v2(59)')"


@pytest.fixture
def sql_only(cluster: Cluster) -> Iterator[tuple[str, LocalRealtime]]:
    """A database set up as a Supabase project (the realtime schema, then our SQL) behind a local
    server that stands in for Supabase Realtime and stamps nothing itself."""
    name = cluster.create_database()
    url = cluster.url_for(name)
    with psycopg.connect(url, autocommit=True) as conn:
        prepare(conn)
    try:
        with LocalRealtime(url, ServerConfig(port=0, stamp=False)).in_thread() as server:
            yield url, server
    finally:
        cluster.drop_database(name)


@pytest.fixture
def with_pg_cron() -> Iterator[tuple[str, LocalRealtime]]:
    """A cluster that runs pg_cron (in its background workers, as on hosted Supabase), its ``postgres``
    database set up as a Supabase project's, behind a local server that stamps nothing itself."""
    settings = {"shared_preload_libraries": "pg_cron", "cron.database_name": "postgres",
                "cron.use_background_workers": "on", "max_worker_processes": "16"}
    with LocalPostgres(settings=settings) as pg:
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            prepare(conn)
            conn.execute("CREATE EXTENSION pg_cron")
        with LocalRealtime(pg.dsn, ServerConfig(port=0, stamp=False)).in_thread() as server:
            yield pg.dsn, server


def _update(url: str, position: int, quantities: range, commits: dict[tuple[int, int], float]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for n in quantities:
            conn.execute("UPDATE positions SET quantity = %s WHERE id = %s", (n, position))
            commits[(position, n)] = time.monotonic()
            time.sleep(0.005)


def _write(url: str, ids: list[int], quantities: range,
           commits: dict[tuple[int, int], float]) -> list[threading.Thread]:
    """One writer per position, each setting its quantity to each of ``quantities`` in turn."""
    writers = [threading.Thread(target=_update, args=(url, position, quantities, commits)) for position in ids]
    for thread in writers:
        thread.start()
    return writers


def _updates(agent: JsAgent) -> list[dict[str, Any]]:
    return [e for e in agent.inbox.items if e["type"] == "broadcast" and e["payload"]["event"] == "UPDATE"]


async def _arrivals(agent: JsAgent, expected: int, timeout: float) -> dict[tuple[int, int], float]:
    """When each (position, quantity) reached the browser, once ``expected`` updates are in (or time is up)."""
    arrived: dict[tuple[int, int], float] = {}
    deadline = time.monotonic() + timeout
    while True:  # note each arrival before looking whether all are in, so the last ones count too
        for event in _updates(agent):
            record = event["payload"]["payload"]["record"]
            arrived.setdefault((record["id"], int(record["quantity"])), time.monotonic())
        if len(_updates(agent)) >= expected or time.monotonic() > deadline:
            return arrived
        await asyncio.sleep(0.002)


def _positions(url: str, count: int) -> list[int]:
    with psycopg.connect(url, autocommit=True) as conn:
        return [row[0] for row in conn.execute(
            "INSERT INTO positions (symbol, quantity) SELECT 'P' || n, 0 FROM generate_series(1, %s) n RETURNING id",
            (count,)).fetchall()]


@contextlib.asynccontextmanager
async def _browser(server: LocalRealtime) -> AsyncIterator[JsAgent]:
    """supabase-js with the service role, subscribed to the private channel ``position-updates``."""
    agent = await JsAgent.start(server.url, server.service_role_key, "2.0.0")
    try:
        await agent.send(cmd="subscribe", name="position-updates", config={"private": True})
        await agent.subscribed("position-updates")
        yield agent
    finally:
        await agent.close()


def _latency(commits: dict[tuple[int, int], float], arrived: dict[tuple[int, int], float]) -> str:
    delays = [arrived[key] - commits[key] for key in commits if key in arrived]
    return (f"p50 {statistics.median(delays) * 1000:.1f} ms, max {max(delays) * 1000:.1f} ms "
            f"over {len(delays)} changes")


async def test_pg_cron_runs_the_stamper_and_supabase_js_receives_every_change(
        with_pg_cron: tuple[str, LocalRealtime]) -> None:
    """docs/supabase.md's pg_cron job, for real: changes written before its first run wait and then
    arrive; changes written while it runs arrive within milliseconds; all once, in per-row order."""
    url, server = with_pg_cron
    ids = _positions(url, WRITERS)
    async with _browser(server) as agent:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(CRON_JOB)
            waiting: dict[tuple[int, int], float] = {}
            for thread in _write(url, ids, range(1, UPDATES + 1), waiting):
                thread.join()
            async with asyncio.timeout(75):  # pg_cron 1.4 starts jobs on the minute
                while not (run := conn.execute(
                        "SELECT job_pid FROM cron.job_run_details WHERE status = 'running'").fetchone()):
                    await asyncio.sleep(0.2)
            before = await _arrivals(agent, WRITERS * UPDATES, timeout=10)
            assert len(before) == WRITERS * UPDATES, f"{len(before)} of {WRITERS * UPDATES} waiting changes arrived"
            [stamper_pid] = conn.execute("SELECT stamper_pid FROM supabase_push.pending_v2()").fetchone() or [None]
            assert stamper_pid == run[0], "the job's backend is the stamping loop"
            commits: dict[tuple[int, int], float] = {}
            writers = _write(url, ids, range(UPDATES + 1, 2 * UPDATES + 1), commits)
            arrived = await _arrivals(agent, 2 * WRITERS * UPDATES, timeout=20)
            for thread in writers:
                thread.join()
        got = [event["payload"]["payload"]["record"] for event in _updates(agent)]
        assert len(got) == 2 * WRITERS * UPDATES, f"{len(got)} of {2 * WRITERS * UPDATES} changes arrived"
        for position in ids:
            seen = [int(r["quantity"]) for r in got if r["id"] == position]
            assert seen == list(range(1, 2 * UPDATES + 1)), f"position {position}: {seen}"
        print(f"commit to supabase-js, stamped by pg_cron's job: {_latency(commits, arrived)}")


async def test_supabase_js_receives_every_change_with_only_the_sql_stamping(
        sql_only: tuple[str, LocalRealtime]) -> None:
    url, server = sql_only
    ids = _positions(url, WRITERS)
    async with _browser(server) as agent:
        commits: dict[tuple[int, int], float] = {}
        with psycopg.connect(url, autocommit=True) as conn:  # nobody stamps yet: nothing may arrive
            conn.execute("UPDATE positions SET quantity = 0 WHERE id = %s", (ids[0],))
        await asyncio.sleep(1.0)
        assert _updates(agent) == [], "a change was pushed though nothing stamps"

        loop = psycopg.connect(url, autocommit=True)
        stamping = asyncio.create_task(asyncio.to_thread(
            loop.execute, "CALL supabase_push.stamp_loop_v2(30, 1, 50, NULL)"))  # the pg_cron job's body
        try:
            writers = _write(url, ids, range(1, UPDATES + 1), commits)
            arrived = await _arrivals(agent, WRITERS * UPDATES + 1, timeout=20)
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

        got = [event["payload"]["payload"]["record"] for event in _updates(agent)]
        assert len(got) == WRITERS * UPDATES + 1, f"{len(got)} of {WRITERS * UPDATES + 1} changes arrived"
        assert got[0]["id"] == ids[0] and int(got[0]["quantity"]) == 0  # the one written before the loop
        for position in ids:
            seen = [int(r["quantity"]) for r in got if r["id"] == position and (r is not got[0])]
            assert seen == list(range(1, UPDATES + 1)), f"position {position}: {seen}"
        [event] = published  # supabase-js hears it under its own name: channel.on('broadcast', {event: 'risk-limit'})
        envelope = event["payload"]["payload"]
        assert envelope["op"] == "EVENT" and envelope["event"] == "risk-limit" and envelope["table"] == ""
        assert envelope["record"] == {"limit": 5000, "user_id": "u1"}
        print(f"commit to supabase-js, SQL-only stamping: {_latency(commits, arrived)}")
