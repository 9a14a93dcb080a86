"""Every script in examples/ runs, as a user runs it, against a real Postgres (and the local server)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
from realtime import AsyncRealtimeClient

from supabase_push.local import LocalRealtime

from .postgrest import free_port
from .realtime_helpers import Inbox, options

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(script: str, *args: str, env: dict[str, str], cwd: Path,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(EXAMPLES / script), *args], env={**os.environ, **env}, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, check=False)


def execute(url: str, *statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement.encode())


async def test_fastapi_backend_writes_and_broadcasts(realtime: LocalRealtime, realtime_db: str) -> None:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": realtime_db, "SUPABASE_URL": realtime.url,
           "SUPABASE_SERVICE_ROLE_KEY": realtime.service_role_key}
    server = subprocess.Popen([sys.executable, str(EXAMPLES / "fastapi_backend.py"), "--port", str(port)], env=env)
    client = AsyncRealtimeClient(realtime.realtime_url, realtime.service_role_key)
    try:
        inbox = Inbox()
        channel = client.channel("trade-updates", options(private=True))
        channel.on_broadcast("*", inbox)
        await channel.subscribe()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            for _ in range(200):
                try:
                    await http.get("/docs")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            response = await http.post("/fills", json={"symbol": "FAPI", "side": "buy", "quantity": 2,
                                                       "price": 601.25})
        assert response.status_code == 201, response.text
        trade_id = response.json()["id"]
        change = await inbox.wait_for(lambda m: m["event"] == "INSERT" and m["payload"]["record"]["id"] == trade_id)
        told = await inbox.wait_for(lambda m: m["event"] == "trade_executed")
        assert change[0]["payload"]["record"]["symbol"] == "FAPI"
        assert told[0]["payload"]["id"] == trade_id and told[0]["payload"]["symbol"] == "FAPI"
    finally:
        await client.close()
        server.terminate()
        server.wait(10)


def test_subscriber_script_resumes_where_it_stopped(installed_url: str, tmp_path: Path) -> None:
    execute(installed_url, *[f"INSERT INTO trades (symbol, side, quantity, price) VALUES ('T{n}', 'buy', 1, 1)"
                             for n in range(3)])
    first = run("subscriber.py", "--count", "3", env={"DATABASE_URL": installed_url}, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert [line.split()[4] for line in first.stdout.splitlines()[:3]] == ["T0", "T1", "T2"]
    assert (tmp_path / "subscriber.cursor").exists()
    execute(installed_url, "INSERT INTO trades (symbol, side, quantity, price) VALUES ('T3', 'buy', 1, 1)")
    second = run("subscriber.py", "--count", "1", env={"DATABASE_URL": installed_url}, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines()[0].split()[4] == "T3"


def test_sync_script(installed_url: str, tmp_path: Path) -> None:
    execute(installed_url, "INSERT INTO positions (symbol, quantity, current_price) VALUES ('SPY', 3, 601.25)",
            "UPDATE positions SET quantity = 5 WHERE symbol = 'SPY'")
    done = run("sync_script.py", "--count", "2", env={"DATABASE_URL": installed_url}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["INSERT SPY: 3 @ 601.25", "UPDATE SPY: 5 @ 601.25"]


def test_portfolio_aggregator_matches_the_tables(installed_url: str, tmp_path: Path) -> None:
    execute(installed_url,
            "INSERT INTO positions (account_id, symbol, quantity, current_price) VALUES "
            "('alice', 'SPY', 10, 600.50), ('alice', 'QQQ', 2, 510), ('bob', 'NVDA', 7, 140.25)",
            "UPDATE positions SET current_price = 602 WHERE symbol = 'SPY'",
            "DELETE FROM positions WHERE symbol = 'QQQ'",
            "INSERT INTO positions (account_id, symbol, quantity, current_price) VALUES ('bob', 'TSLA', 1, 250)")
    started = time.monotonic()
    done = run("portfolio_aggregator.py", "--until-quiet", "1.5", env={"DATABASE_URL": installed_url}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    final = json.loads(done.stdout.splitlines()[-1])["final"]
    with psycopg.connect(installed_url) as conn:
        rows = conn.execute("SELECT account_id, sum(quantity * current_price)::numeric(20, 2)::text "
                            "FROM positions GROUP BY 1 ORDER BY 1").fetchall()
    assert final == dict(rows) == {"alice": "6020.00", "bob": "1231.75"}
    assert time.monotonic() - started < 30
