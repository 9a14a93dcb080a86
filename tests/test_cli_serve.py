"""``supabase-push serve``: the local server as users run it, used by the official client."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
from realtime import AsyncRealtimeClient

from tests.test_local_python import subscribe

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
    served = serve("--db-url", url, "--apply")
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
                                 "--port", str(port)], capture_output=True, text=True, timeout=60)
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



def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def test_an_idle_server_does_not_burn_a_core(db_url: str) -> None:
    served = serve("--db-url", db_url)
    try:
        time.sleep(0.5)
        before = cpu_seconds(served.proc.pid)
        time.sleep(3)
        used = cpu_seconds(served.proc.pid) - before
        assert used < 0.3, f"idle server used {used:.2f} s of CPU in 3 s"
    finally:
        assert served.stop() == 0
