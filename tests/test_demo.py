"""``supabase-push demo`` as a new user meets it: headless and live, Ctrl-C, and against a project."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import psycopg
import pytest
from typer.testing import CliRunner

from supabase_push.cli import app
from supabase_push.demo.market import ACCOUNT, MAX_POSITION_VALUE, Market
from supabase_push.embedded import CLUSTERS_DIR
from supabase_push.local import LocalRealtime

TABLES = ("positions", "trades", "portfolio_snapshots")


def demo(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "supabase_push", "demo", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


def test_headless_demo_reports_every_table_and_loses_nothing() -> None:
    started = time.monotonic()
    proc = demo("--duration", "5", "--json")
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert time.monotonic() - started < 60 and summary["traded_seconds"] < summary["total_seconds"] < 60
    assert isinstance(summary["postgres_version"], int)
    assert summary["ok"] and summary["lost"] == 0 and summary["duplicates"] == 0
    assert all(summary["by_table"][table] > 0 for table in TABLES)
    assert summary["changes"] == sum(summary["by_table"].values())
    for name, figures in summary["transports"].items():
        assert figures["delivered"] == summary["changes"] and figures["lost"] == 0 and figures["in_order"], name
        assert figures["latency_ms"]["p50"] is not None
    assert summary["transports"]["realtime"]["by_source"].get("realtime", 0) > 0
    assert summary["transports"]["listen"]["by_source"].get("listen", 0) > 0
    assert summary["service_broadcasts"]["accepted"] > 0 and summary["service_broadcasts"]["failed"] == 0


@pytest.mark.timing
async def test_the_simulated_account_stays_solvent(db_url: str) -> None:
    """Regression: cash went from 100,000 to -231,069 in 52 s (buys 60 % of the time, cash never checked)."""
    import asyncio

    market = Market(db_url, fills_per_second=400, ticks_per_second=100, snapshot_every=0.05, seed=7)
    await market.open_book()
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(3, stop.set)
    await market.run(stop)
    with psycopg.connect(db_url) as conn:
        trades = conn.execute("SELECT count(*), count(*) FILTER (WHERE side = 'sell') FROM trades").fetchone()
        lowest = conn.execute("SELECT min(cash), count(*) FROM portfolio_snapshots").fetchone()
        largest = conn.execute("SELECT max(quantity * average_price) FROM positions").fetchone()
    assert trades is not None and lowest is not None and largest is not None
    assert trades[0] > 200 and trades[1] > 50, trades  # it kept trading both ways once fully invested
    assert lowest[1] > 10 and lowest[0] >= 0, f"cash fell to {lowest[0]}"
    assert market.cash >= 0
    assert float(largest[0]) <= MAX_POSITION_VALUE, largest


def trading_demo() -> subprocess.Popen[str]:
    """A demo that will run for minutes, once it has started trading."""
    proc = demo("--duration", "120")
    assert proc.stdout is not None
    for line in proc.stdout:
        if "trading for" in line:
            break
    return proc


def test_ctrl_c_stops_everything_it_started() -> None:
    proc = trading_demo()
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "lost 0, duplicates 0" in out and "removed the throwaway Postgres" in out
    assert not list(CLUSTERS_DIR.glob(f"{proc.pid}-*")), "the demo left its cluster behind"


def test_live_dashboard_renders() -> None:
    """On a terminal: positions, trades, portfolio and a row per transport."""
    from rich.console import Console

    from supabase_push.demo import run_demo

    console = Console(force_terminal=True, width=120, record=True)
    summary = run_demo(duration=2, live=True, say=console.print, console=console)
    text = console.export_text()
    assert summary["ok"]
    for heading in ("Positions", "Latest trades", "Transports", "portfolio", "push:realtime", "push:listen",
                    "poll:sql", "SPY"):
        assert heading in text, heading


def test_dashboard_fits_80_by_24() -> None:
    """Regression: at 80x24 the transports table, the point of the demo, was cut to "..."; lost and
    duplicates per transport were only in the exit summary."""
    from rich.console import Console

    from supabase_push.demo import run_demo

    console = Console(force_terminal=True, width=80, height=24, record=True)
    summary = run_demo(duration=2, live=True, say=lambda _text: None, console=console)
    text = console.export_text()
    assert summary["ok"]
    assert "…" not in text and "   ...   " not in text, "something was cut"
    for heading in ("Transports", "lost", "dup", "push:realtime", "push:listen", "poll:sql", "Positions", "TSLA"):
        assert heading in text, heading


def test_demo_against_a_project(realtime: LocalRealtime, realtime_db: str) -> None:
    """--supabase with the local server standing in for the project: Realtime and polling, rows cleaned up."""
    env = {"SUPABASE_URL": realtime.url, "SUPABASE_SERVICE_ROLE_KEY": realtime.service_role_key,
           "DATABASE_URL": realtime_db}
    proc = demo("--supabase", "--duration", "3", "--json", env=env)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert summary["ok"] and summary["mode"] == "supabase" and set(summary["transports"]) == {"realtime", "poll"}
    assert realtime.service_role_key not in out + err
    with psycopg.connect(realtime_db) as conn:
        for table in TABLES:
            row = conn.execute(f"SELECT count(*) FROM {table} WHERE account_id = %s", (ACCOUNT,)).fetchone()
            assert row == (0,), table


def test_demo_against_a_project_needs_its_settings() -> None:
    result = CliRunner().invoke(app, ["demo", "--supabase", "--json"])
    assert result.exit_code == 2
    assert "DATABASE_URL" in result.output and "SUPABASE_SERVICE_ROLE_KEY" in result.output


def test_kill_9_leaves_no_postgres_behind() -> None:
    """Nor its PostgREST, which would otherwise retry the lost database forever."""
    proc = trading_demo()
    clusters = list(CLUSTERS_DIR.glob(f"{proc.pid}-*"))
    assert len(clusters) == 1
    postmaster = int((clusters[0] / "data" / "postmaster.pid").read_text().splitlines()[0])
    postgrest = [child.pid for child in psutil.Process(proc.pid).children(recursive=True)
                 if child.name() == "postgrest"]
    assert postgrest, "the demo runs no PostgREST"
    proc.kill()
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (clusters[0].exists() or _alive(postmaster)
                                           or any(map(_alive, postgrest))):
        time.sleep(0.1)
    assert not clusters[0].exists() and not _alive(postmaster), "the killed demo's Postgres outlived it"
    assert not any(map(_alive, postgrest)), "the killed demo's PostgREST outlived it"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
