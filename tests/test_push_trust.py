"""What a push may carry and how far it is trusted (issue 20, items 1 and 2).

PostgreSQL has no privilege check on LISTEN, and any role may NOTIFY on any channel. So a NOTIFY
carries no row (a listener that may not read the table learns nothing of it), and a push is only
a hint: the subscriber reads the change by cursor with its own rights, and nothing a forged push
says moves its cursor."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql

from supabase_push.changelog import stamp
from supabase_push.events import Cursor
from supabase_push.subscribe import Subscriber

from .relay_helpers import ADMIN, SseStream, data, relay
from .subscriber_helpers import logged, settings
from .test_cli_tail import tail, until_state

ROLE_PASSWORD = "listen-only-9f1c"


def as_role(url: str, role: str) -> str:
    return psycopg.conninfo.make_conninfo(url, user=role, password=ROLE_PASSWORD)


def nobody(url: str) -> str:
    """A role with no table privileges (CONNECT only, as every role has by default)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS nobody_listens")
        conn.execute(sql.SQL("CREATE ROLE nobody_listens LOGIN PASSWORD {}").format(sql.Literal(ROLE_PASSWORD)))
    return as_role(url, "nobody_listens")


def test_a_role_without_select_hears_no_row(installed_url: str) -> None:
    with psycopg.connect(nobody(installed_url), autocommit=True) as listener:
        assert listener.execute("SELECT has_table_privilege('trades', 'SELECT')").fetchone() == (False,)
        listener.execute('LISTEN "trade-updates"')
        with psycopg.connect(installed_url, autocommit=True) as writer:
            writer.execute("INSERT INTO trades (user_id, symbol, side, quantity, price) "
                           "VALUES (gen_random_uuid(), 'SECRET', 'buy', 7, 123.45)")
            stamp(writer)  # the stamper's round sends the push
        [note] = list(listener.notifies(timeout=5, stop_after=1))
    payload = json.loads(note.payload)
    assert "SECRET" not in note.payload and "123.45" not in note.payload
    assert payload["truncated"] is True and "record" not in payload and "old_record" not in payload
    assert payload["cursor"] == logged(installed_url, ["trade-updates"])[-1]


def forge(url: str, heads: dict[str, str]) -> None:
    """What any role can send: an envelope far ahead whose prev matches the real heads."""
    envelope = {"id": 999999999, "cursor": "999999999:999999999", "topic": "trade-updates", "schema": "public",
                "table": "trades", "op": "INSERT", "record": {"symbol": "FORGED"}, "old_record": None,
                "commit_ts": "2026-12-01T00:00:00Z", "prev": heads}
    with psycopg.connect(nobody(url), autocommit=True) as conn:
        conn.execute("SELECT pg_notify('trade-updates', %s)", (json.dumps(envelope),))


def heads(url: str) -> dict[str, str]:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT heads FROM supabase_push.commits WHERE heads IS NOT NULL "
                           "ORDER BY seq DESC LIMIT 1").fetchone()
    return dict(row[0]) if row else {}


def insert(url: str, *symbols: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for symbol in symbols:
            conn.execute("INSERT INTO trades (symbol, side, quantity, price) VALUES (%s, 'buy', 1, 1)", (symbol,))


async def test_a_forged_notify_moves_no_cursor_and_stops_nothing(installed_url: str, tmp_path: Path) -> None:
    insert(installed_url, "REAL0")
    cursor_file = tmp_path / "cursor"
    subscriber = Subscriber.from_settings(settings(database_url=installed_url), topics=["trade-updates"],
                                          start="now", cursor_store=cursor_file)
    seen: list[str] = []
    async with subscriber:
        await subscriber.wait_ready()
        await asyncio.to_thread(forge, installed_url, heads(installed_url))
        await asyncio.sleep(0.3)
        await asyncio.to_thread(insert, installed_url, "REAL1", "REAL2", "REAL3")
        async with asyncio.timeout(20):
            async for event in subscriber:
                assert event.record is not None
                seen.append(str(event.record["symbol"]))
                if len(seen) == 3:
                    break
    assert seen == ["REAL1", "REAL2", "REAL3"]
    assert subscriber.stats.delivered.get("listen") == 3 and subscriber.cursor == Cursor.parse(
        logged(installed_url, ["trade-updates"])[-1])
    assert cursor_file.read_text() == logged(installed_url, ["trade-updates"])[-1]


def test_tail_after_a_forged_notify_shows_the_real_trades_and_resumes(installed_url: str, tmp_path: Path) -> None:
    """The issue's reproduction: tail, a forged NOTIFY, three real trades; then a restart from the file."""
    cursor_file = str(tmp_path / "cursor")
    insert(installed_url, "REAL0")
    first = tail("--db-url", installed_url, "--json", "--from", "now", "--cursor-file", cursor_file,
                 "--count", "3", "--timeout", "30", "--topic", "trade-updates", "--stats-every", "0.2")
    until_state(first, '"state": "push:listen"')
    forge(installed_url, heads(installed_url))
    insert(installed_url, "REAL1", "REAL2", "REAL3")
    out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    symbols: list[Any] = [json.loads(line)["record"]["symbol"] for line in out.splitlines()]
    assert symbols == ["REAL1", "REAL2", "REAL3"]
    assert Path(cursor_file).read_text() == logged(installed_url, ["trade-updates"])[-1]
    insert(installed_url, "REAL4")
    second = tail("--db-url", installed_url, "--json", "--cursor-file", cursor_file, "--count", "1",
                  "--timeout", "30", "--topic", "trade-updates")
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    assert [json.loads(line)["record"]["symbol"] for line in out.splitlines()] == ["REAL4"]


async def test_a_forged_notify_never_reaches_a_browser_through_the_relay(installed_url: str) -> None:
    async with relay(installed_url) as server:
        async with SseStream(server.url, ADMIN, topics="trade-updates") as stream:
            await asyncio.sleep(0.5)  # the stream is open
            await asyncio.to_thread(forge, installed_url, heads(installed_url))
            await asyncio.to_thread(insert, installed_url, "REAL1")
            [event] = await stream.take(1)
        async with httpx.AsyncClient() as http:
            health = await http.get(f"{server.url}/healthz")
    assert data(event)["record"]["symbol"] == "REAL1"
    assert data(event)["cursor"] == logged(installed_url, ["trade-updates"])[-1]
    assert health.status_code == 200
