"""``supabase-push serve``: the local server as users run it, used by the official client."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import psycopg
import pytest
from realtime import AsyncRealtimeClient

from supabase_push.changelog import read_head, stamp
from tests.test_local_python import subscribe

from .processes import cpu_seconds
from .realtime_helpers import Inbox, options


class Served:
    def __init__(self, proc: subprocess.Popen[str], info: dict[str, Any]) -> None:
        self.proc, self.info = proc, info

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        _out, self.stderr = self.proc.communicate(timeout=30)  # also closes the pipes
        return self.proc.returncode


def serve(*args: str) -> Served:
    proc = subprocess.Popen([sys.executable, "-m", "supabase_push", "serve", "--port", "0", "--json", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        _out, stderr = proc.communicate(timeout=30)
        raise AssertionError(f"serve exited {proc.returncode}: {stderr}")
    return Served(proc, json.loads(line))


async def test_serve_on_a_database_delivers_trigger_broadcasts(make_db: Any) -> None:
    url = make_db("tables")
    served = serve("--db-url", url, "--apply", "--install-realtime")
    try:
        info = served.info
        assert info["url"].startswith("http://127.0.0.1:") and "password" not in json.dumps(info)
        client = AsyncRealtimeClient(info["realtime_url"], info["service_role_key"])
        inbox = Inbox()
        channel = client.channel("portfolio-updates", options(private=True))
        channel.on_broadcast("*", inbox)
        await subscribe(channel)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("INSERT INTO portfolio_snapshots (total_value, cash) VALUES (125000.50, 2500)")
        [message] = await inbox.wait_for(lambda p: p["event"] == "INSERT")
        assert message["payload"]["record"]["total_value"] == 125000.50
        await client.close()
    finally:
        assert served.stop() == 0


async def test_serve_with_nothing_configured_starts_its_own_postgres() -> None:
    served = serve()
    try:
        client = AsyncRealtimeClient(served.info["realtime_url"], served.info["anon_key"])
        inbox = Inbox()
        channel = client.channel("hello")
        channel.on_broadcast("*", inbox)
        await subscribe(channel)
        await channel.http_send("hi", {"n": 1})
        await inbox.wait_for(lambda p: p["payload"] == {"n": 1})
        # the throwaway database is printed whole (it is the only way in), trading tables ready
        with psycopg.connect(served.info["database"], autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM positions").fetchone() == (0,)
        await client.close()
    finally:
        assert served.stop() == 0


def test_serve_reports_a_busy_port_and_a_bad_database(db_url: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "supabase_push", "serve", "--db-url", db_url,
                                 "--install-realtime", "--port", str(port)], capture_output=True, text=True,
                                timeout=60)
    assert result.returncode == 2, result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    bad = "postgresql://nobody:wrongpw@" + db_url.split("@", 1)[1]
    result = subprocess.run([sys.executable, "-m", "supabase_push", "serve", "--db-url", bad, "--port", "0"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "wrongpw" not in result.stderr + result.stdout
    assert "error:" in result.stderr


def test_serve_help_says_development_only() -> None:
    result = subprocess.run([sys.executable, "-m", "supabase_push", "serve", "--help"],
                            capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"})
    assert "DEVELOPMENT AND TESTS ONLY" in result.stdout and "127.0.0.1" in result.stdout



@pytest.mark.timing
def test_an_idle_server_does_not_burn_a_core(db_url: str) -> None:
    served = serve("--db-url", db_url, "--install-realtime")
    try:
        time.sleep(0.5)
        before = cpu_seconds(served.proc.pid)
        time.sleep(3)
        used = cpu_seconds(served.proc.pid) - before
        assert used < 0.3, f"idle server used {used:.2f} s of CPU in 3 s"
    finally:
        assert served.stop() == 0


# -- a database serve did not create ------------------------------------------------------------


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "supabase_push", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


def listen_hears_a_trade(url: str) -> bool:
    """A NOTIFY for the new trade arrives (it names the change's cursor; it never carries the row)."""
    with psycopg.connect(url, autocommit=True) as listener, psycopg.connect(url, autocommit=True) as writer:
        listener.execute('LISTEN "trade-updates"')
        writer.execute("INSERT INTO trades (symbol, side, quantity, price) VALUES ('HEAR', 'buy', 1, 1)")
        stamp(writer)  # what any supabase-push process (or pg_cron) does: the round pushes
        notes = list(listener.notifies(timeout=3, stop_after=1))
        cursor = str(read_head(writer))
    return any(json.loads(note.payload)["cursor"] == cursor for note in notes)


def schemas(url: str) -> set[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        return {row[0] for row in conn.execute("SELECT nspname FROM pg_namespace WHERE nspname IN "
                                               "('realtime', 'auth', 'supabase_push_local')").fetchall()}


def test_serve_refuses_to_rewire_a_database_it_did_not_create(installed_url: str) -> None:
    """Regression: serve --db-url added the realtime schema, so triggers in mode auto moved from NOTIFY
    to realtime.send, silently and for good."""
    result = cli("serve", "--db-url", installed_url, "--port", "0")
    assert result.returncode == 2, result.stderr
    assert "has no realtime schema; serving it would add" in result.stderr
    assert "schemas auth, realtime" in result.stderr and "instead of NOTIFY" in result.stderr
    assert "--install-realtime" in result.stderr
    assert schemas(installed_url) == set()
    assert listen_hears_a_trade(installed_url)


def test_serve_ignores_database_url_unless_named(installed_url: str) -> None:
    """`supabase-push serve` is the throwaway Postgres even when DATABASE_URL is exported (for apply)."""
    proc = subprocess.Popen([sys.executable, "-m", "supabase_push", "serve", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "DATABASE_URL": installed_url, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    lines = [proc.stdout.readline() for _ in range(3)]
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert "DATABASE_URL is set, but serve uses a throwaway Postgres" in lines[0]
    assert "throwaway Postgres" in lines[1]
    assert schemas(installed_url) == set()


def test_install_realtime_is_reported_by_verify_status_doctor_and_clean_undoes_it(installed_url: str) -> None:
    served = serve("--db-url", installed_url, "--install-realtime")
    try:
        assert "schema realtime" in served.info["added"]
    finally:
        assert served.stop() == 0
    assert not listen_hears_a_trade(installed_url), "the push path did move to realtime.send"

    verify = cli("verify", "--db-url", installed_url, "--json")
    assert verify.returncode == 1
    [drift] = [c for c in json.loads(verify.stdout)["checks"] if c["name"] == "push path"]
    assert drift["status"] == "drifted" and "apply chose notify" in drift["detail"]
    assert "serve --clean" in drift["detail"]
    status = json.loads(cli("status", "--db-url", installed_url, "--json").stdout)
    assert status["broadcast_path"] == ["realtime"] and status["applied_path"] == ["notify"]
    assert "changed since apply" in cli("status", "--db-url", installed_url, env={"COLUMNS": "200"}).stdout
    doctor = json.loads(cli("doctor", "--db-url", installed_url, "--json").stdout)
    [finding] = [f for f in doctor["findings"] if f["check"] == "push path"]
    assert finding["status"] == "fail" and "serve --clean" in finding["fix"]

    cleaned = cli("serve", "--clean", "--db-url", installed_url, "--json")
    assert cleaned.returncode == 0, cleaned.stderr
    report = json.loads(cleaned.stdout)
    assert "schema realtime" in report["removed"] and report["push_path"] == ["notify"]
    assert schemas(installed_url) == set()
    assert cli("verify", "--db-url", installed_url).returncode == 0
    assert listen_hears_a_trade(installed_url)
    again = cli("serve", "--clean", "--db-url", installed_url)
    assert again.returncode == 0 and "nothing to remove" in again.stdout


def test_uninstall_names_what_serve_left(installed_url: str) -> None:
    assert serve("--db-url", installed_url, "--install-realtime").stop() == 0
    result = cli("uninstall", "--db-url", installed_url, "--yes", "--json")
    assert result.returncode == 0, result.stderr
    assert "schema realtime" in json.loads(result.stdout)["local_server_objects"]
    text = cli("uninstall", "--db-url", installed_url, "--yes", env={"COLUMNS": "300"}).stdout
    assert "serve --clean" in text
    assert cli("serve", "--clean", "--db-url", installed_url).returncode == 0
    after = cli("uninstall", "--db-url", installed_url, "--yes", "--json")
    assert json.loads(after.stdout)["local_server_objects"] == []


def test_a_realtime_schema_dropped_by_hand_is_not_recreated_silently(installed_url: str) -> None:
    assert serve("--db-url", installed_url, "--install-realtime").stop() == 0
    with psycopg.connect(installed_url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA realtime CASCADE")
    result = cli("serve", "--db-url", installed_url, "--port", "0")
    assert result.returncode == 2 and "has no realtime schema" in result.stderr, result.stderr
    assert "realtime" not in schemas(installed_url)
