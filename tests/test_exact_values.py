"""Every value Postgres can store reaches the user exactly, and no single row stops a reader.

Regression: ``trunc(10::numeric ^ 5000)`` in a routed row stopped every reader (``ValueError:
Exceeds the limit (4300 digits)`` decoding the jsonb), and a numeric too large for a double
arrived as ``null``. Each reader here gets the hostile rows and the ordinary one after them.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest

from supabase_push.events import START
from supabase_push.local import LocalRealtime, tokens
from supabase_push.subscribe import Subscriber

from .postgrest import PostgREST
from .relay_helpers import ADMIN, SseStream, data, relay
from .subscriber_helpers import logged, settings

# quantity, price: a wei over one (a double says 1.0), an integer past int(str)'s 4,300 digits, one
# past a double, digits a double would round. WEI comes first so that a push carrying it rounded
# would be delivered as it came (it follows the cursor), not after a read by cursor.
HOSTILE = [
    ("WEI", "1.000000000000000001", "1"),
    ("HUGE", "trunc(10::numeric ^ 5000)", "1"),
    ("PASTDOUBLE", "10::numeric ^ 400 + 0.5", "1"),
    ("PRECISE", "12345678901234567890.123456789", "0.1"),
    ("AFTER", "2", "13.50"),
]


def insert_hostile(url: str) -> dict[str, tuple[str, str]]:
    """The rows, and each symbol's quantity and price as Postgres prints them (the truth)."""
    with psycopg.connect(url, autocommit=True) as conn:
        for symbol, quantity, price in HOSTILE:
            conn.execute(f"INSERT INTO trades (symbol, side, quantity, price) VALUES (%s, 'buy', {quantity}, {price})",
                         (symbol,))
        rows = conn.execute("SELECT symbol, quantity::text, price::text FROM trades WHERE symbol = ANY(%s)",
                            ([s for s, _, _ in HOSTILE],)).fetchall()
    return {str(symbol): (str(quantity), str(price)) for symbol, quantity, price in rows}


def exact(value: Any) -> Decimal:
    """What a delivered value says, as a number: a float by its shortest text, a Decimal or text as is."""
    assert value is not None, "a numeric arrived as null"
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))


def assert_exact(records: list[dict[str, Any]], truth: dict[str, tuple[str, str]]) -> None:
    assert [r["symbol"] for r in records] == [s for s, _, _ in HOSTILE]
    for record in records:
        quantity, price = truth[record["symbol"]]
        assert exact(record["quantity"]) == Decimal(quantity), record["symbol"]
        assert exact(record["price"]) == Decimal(price), record["symbol"]
    assert records[-1]["price"] == 13.5  # an ordinary number stays an ordinary float


async def collect(subscriber: Subscriber, count: int) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    async with asyncio.timeout(30):
        async for event in subscriber:
            if event.record and event.record["symbol"] in {s for s, _, _ in HOSTILE}:
                records.append(event.record)
            if len(records) == count:
                return records
    raise AssertionError("the stream ended")


async def check_exact(subscriber: Subscriber, url: str) -> None:
    async with subscriber:
        await subscriber.wait_ready()
        truth = await asyncio.to_thread(insert_hostile, url)
        records = await collect(subscriber, len(HOSTILE))
    assert_exact(records, truth)
    assert subscriber.stats.read_failures == 0


async def test_listen_and_sql(installed_url: str) -> None:
    await check_exact(Subscriber.from_settings(settings(database_url=installed_url), topics=["trade-updates"],
                                               start="now"), installed_url)


async def test_realtime_and_postgrest(realtime: LocalRealtime, realtime_db: str) -> None:
    """Pushed through the local Realtime server to the official client, read back through a real PostgREST."""
    service_key = tokens.mint("service_role", tokens.DEV_SECRET)
    with PostgREST(realtime_db, tokens.DEV_SECRET) as api:
        await check_exact(Subscriber.from_settings(
            settings(supabase_url=realtime.url, service_role_key=service_key), rest_url=api.url,
            topics=["trade-updates"], start=(logged(realtime_db, ["trade-updates"]) or ["0:0"])[-1],
            poll_interval=0.2, liveness_interval=2), realtime_db)


@pytest.fixture
def hostile_log(installed_url: str) -> Iterator[tuple[str, dict[str, tuple[str, str]]]]:
    yield installed_url, insert_hostile(installed_url)


def test_tail_json_prints_them_exactly(hostile_log: tuple[str, dict[str, tuple[str, str]]]) -> None:
    url, truth = hostile_log
    done = subprocess.run([sys.executable, "-m", "supabase_push", "tail", "--db-url", url, "--json", "--count",
                           str(len(HOSTILE)), "--timeout", "30", "--topic", "trade-updates"],
                          capture_output=True, text=True, timeout=60, env=os.environ.copy())
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert_exact([json.loads(line)["record"] for line in done.stdout.splitlines()], truth)


async def test_a_browser_resuming_through_the_relay(hostile_log: tuple[str, dict[str, tuple[str, str]]]) -> None:
    """The relay's subscriber survives the rows, and a stream resumed from before them gets them all."""
    url, truth = hostile_log
    async with relay(url) as server:
        async with SseStream(server.url, ADMIN, topics="trade-updates", last_id="0:0") as stream:
            events = await stream.take(len(HOSTILE))
        async with httpx.AsyncClient() as http:
            # The backlog can be read before the push transport has connected: wait for it, then check it.
            for _ in range(50):
                health = await http.get(f"{server.url}/healthz")
                if health.status_code != 200 or health.json()["subscriber"] == "push:listen":
                    break
                await asyncio.sleep(0.1)
    assert_exact([data(e)["record"] for e in events], truth)
    assert health.status_code == 200 and health.json()["subscriber"] == "push:listen"


async def test_a_database_set_to_another_datestyle_reads_commit_times_exactly(installed_url: str) -> None:
    """A database set to a DateStyle other than ISO (psycopg reads a date in text only as ISO writes it): a read
    by SQL on the user's own connection, a snapshot, ``status`` and ``verify`` all work, and every commit time
    is the one the log holds."""
    from datetime import datetime

    from typer.testing import CliRunner

    from supabase_push.changelog import SnapshotStart, read_changes
    from supabase_push.cli import app
    from supabase_push.subscribe import SqlReader

    with psycopg.connect(installed_url, autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE {conn.info.dbname} SET DateStyle = 'SQL, DMY'")
    with psycopg.connect(installed_url, autocommit=True) as conn:
        assert conn.info.parameter_status("DateStyle") == "SQL, DMY"
        for symbol in ("ONE", "TWO"):
            conn.execute("INSERT INTO trades (symbol, side, quantity, price) VALUES (%s, 'buy', 1, 1)", (symbol,))
        events = read_changes(conn, limit=10)
        truth = {seq: datetime.fromisoformat(text) for seq, text in conn.execute(
            "SELECT seq, pg_catalog.to_json(committed_at) #>> '{}' FROM supabase_push.commits").fetchall()}
        assert conn.execute("SHOW DateStyle").fetchone() == ("SQL, DMY",)  # the user's session is left as it was
    assert [e.record["symbol"] for e in events if e.record] == ["ONE", "TWO"]
    assert [e.commit_ts for e in events] == [truth[e.cursor.seq] for e in events]

    reader = SqlReader(installed_url)
    try:
        assert [e.commit_ts for e in await reader.read(START, 10, ["trade-updates"], "catch-up")] \
            == [e.commit_ts for e in events]
        start, *pages = [item async for item in reader.snapshot(["trade-updates"], 10)]
    finally:
        await reader.close()
    assert isinstance(start, SnapshotStart) and start.taken_at.tzinfo is not None
    assert sorted(e.record["symbol"] for page in pages if isinstance(page, list) for e in page if e.record) \
        == ["ONE", "TWO"]

    runner = CliRunner()
    for command in (["status", "--json"], ["verify"]):
        result = runner.invoke(app, [*command, "--db-url", installed_url])
        assert result.exit_code == 0 and "Traceback" not in result.output, result.output
