"""Retention: `prune` deletes old changes; a reader or subscriber behind it gets a gap, never a silent skip."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from supabase_push.changelog import read_changes
from supabase_push.cli import app
from supabase_push.events import START, Cursor
from supabase_push.subscribe import Subscriber

from .subscriber_helpers import settings

runner = CliRunner()


def insert_trades(conn: psycopg.Connection[tuple[object, ...]], count: int, symbol: str = "SPY") -> None:
    for _ in range(count):
        conn.execute("INSERT INTO trades (symbol, side, quantity, price) VALUES (%s, 'buy', 1, 1)", (symbol,))


def test_prune_reports_a_gap_to_readers_behind_it(installed: psycopg.Connection[tuple[object, ...]],
                                                  installed_url: str) -> None:
    insert_trades(installed, 5)
    before = read_changes(installed, START)
    result = runner.invoke(app, ["prune", "--older-than", "0s", "--json", "--db-url", installed_url])
    assert result.exit_code == 0, result.output
    pruned = json.loads(result.output)
    assert pruned == {"ok": True, "deleted": 5, "pruned_through": str(before[-1].cursor)}

    insert_trades(installed, 2)
    behind = read_changes(installed, before[1].position)
    assert [e.op for e in behind] == ["GAP", "INSERT", "INSERT"]
    gap = behind[0]
    assert gap.cursor == before[-1].cursor and gap.topic == "*"
    assert gap.record == {"after": str(before[1].cursor), "pruned_through": str(before[-1].cursor)}
    assert [e.op for e in read_changes(installed, before[-1].position)] == ["INSERT", "INSERT"]  # at the horizon

    status = json.loads(runner.invoke(app, ["status", "--json", "--db-url", installed_url]).output)
    assert status["pruned_through"] == str(before[-1].cursor) and status["changes"] == 2


def test_prune_keeps_what_is_younger(installed: psycopg.Connection[tuple[object, ...]], installed_url: str) -> None:
    insert_trades(installed, 3)
    result = runner.invoke(app, ["prune", "--older-than", "1h", "--db-url", installed_url])
    assert result.exit_code == 0, result.output
    assert "deleted 0 changes" in result.output
    assert len(read_changes(installed, START)) == 3


@pytest.mark.parametrize("bad", ["soon", "-1d", "7 fortnights", ""])
def test_prune_refuses_a_bad_duration(installed_url: str, bad: str) -> None:
    result = runner.invoke(app, ["prune", "--older-than", bad, "--db-url", installed_url])
    assert result.exit_code == 2 and "not a duration" in result.output


def test_prune_before_apply_is_a_clear_error(db_url: str) -> None:
    result = runner.invoke(app, ["prune", "--older-than", "7d", "--db-url", db_url])
    assert result.exit_code == 1 and "supabase-push apply" in result.output


async def test_a_subscriber_behind_the_horizon_gets_a_gap_event(installed_url: str, tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    cursor_file = tmp_path / "cursor"
    with psycopg.connect(installed_url, autocommit=True) as conn:
        insert_trades(conn, 3)
        first = read_changes(conn, START)[0]
        cursor_file.write_text(str(first.cursor))  # a subscriber that stopped after the first change
        insert_trades(conn, 3)
        assert runner.invoke(app, ["prune", "--older-than", "0s", "--db-url", installed_url]).exit_code == 0
        insert_trades(conn, 2, symbol="AFTER")
    seen: list[str] = []
    subscriber = Subscriber.from_settings(settings(database_url=installed_url), topics=["trade-updates"],
                                          cursor_store=cursor_file)
    subscriber.on("position-updates", lambda e: seen.append(e.op))  # gap events reach every callback
    with caplog.at_level(logging.WARNING, logger="supabase_push"):
        async with subscriber:
            got = []
            async for event in subscriber:
                got.append(event)
                if len(got) == 3:
                    break
            await asyncio.sleep(0.1)
    assert [e.op for e in got] == ["GAP", "INSERT", "INSERT"]
    assert [e.record["symbol"] for e in got[1:] if e.record] == ["AFTER", "AFTER"]
    assert got[0].record == {"after": str(first.cursor), "pruned_through": str(got[0].cursor)}
    assert seen == ["GAP"]
    assert subscriber.stats.gaps == 1 and "pruned from the change log" in caplog.text
    assert Cursor.parse(cursor_file.read_text()) == got[-1].position


def test_head_is_the_newest_change_then_the_retention_horizon(
        installed: psycopg.Connection[tuple[object, ...]]) -> None:
    from datetime import timedelta

    from supabase_push import changelog, schema

    assert changelog.read_head(installed) == START  # an empty log
    insert_trades(installed, 3)
    newest = read_changes(installed)[-1].position
    assert changelog.read_head(installed) == newest
    pruned = schema.prune(installed, timedelta(0))
    assert pruned.deleted == 3 and read_changes(installed, START)[0].op == "GAP"
    assert changelog.read_head(installed) == newest == Cursor.parse(str(pruned.pruned_through))  # from the horizon
