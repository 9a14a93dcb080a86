"""Idle is a state: a subscriber, tail, relay or forwarder with nothing to do costs next to nothing.

Each runs on a database of its own with ``track_functions = 'all'``, so
``pg_stat_user_functions`` counts exactly the change-log reads it makes while the tables are quiet.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import conninfo, sql

from supabase_push.subscribe import Subscriber

from .conftest import DatabaseFactory
from .processes import cpu_seconds
from .relay_helpers import SECRET
from .subscriber_helpers import TOPICS, settings

pytestmark = pytest.mark.timing  # CPU and query counts over quiet minutes: run alone (scripts/test)


def track_reads(url: str) -> None:
    """Count calls of the change-log functions in this database (sessions started from now on)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} SET track_functions = 'all'").format(
            sql.Identifier(str(conninfo.conninfo_to_dict(url)["dbname"]))))


def reads(url: str) -> int:
    """Change-log reads (``supabase_push_changes``, ``supabase_push_head``) in the URL's database so far."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT coalesce(sum(calls), 0) FROM pg_stat_user_functions "
                           "WHERE funcname IN ('supabase_push_changes', 'supabase_push_head')").fetchone()
    assert row is not None
    return int(row[0])


def settle_stats() -> None:
    time.sleep(1.2)  # a backend reports its counts at most once a second


async def test_an_idle_subscriber_reads_once_per_verify_interval(installed_url: str) -> None:
    """Regression: after verify_interval without a push the next wake-up was computed as 0 forever,
    ~1,000 empty reads a second."""
    track_reads(installed_url)
    subscriber = Subscriber.from_settings(settings(database_url=installed_url), topics=TOPICS,
                                          verify_interval=0.5, liveness_interval=60)
    async with subscriber:
        await asyncio.wait_for(subscriber.wait_ready(), 20)
        settle_stats()
        started, cpu_before = time.monotonic(), time.process_time()
        before = await asyncio.to_thread(reads, installed_url)
        await asyncio.sleep(4)
        done = await asyncio.to_thread(reads, installed_url) - before
        cpu = time.process_time() - cpu_before
        idle = time.monotonic() - started
        assert subscriber.stats.state == "push:listen"
    # a backend reports its counts at most once a second: allow a second's worth (two reads) at either end
    assert done <= idle / 0.5 + 2, f"{done} reads in {idle:.1f} s idle (one verify read per 0.5 s expected)"
    assert done >= idle / 0.5 - 4, f"{done} reads in {idle:.1f} s idle: the verify reads stopped"
    assert cpu < 0.05 * idle, f"an idle subscriber used {cpu:.2f} s of CPU in {idle:.1f} s"


def _spawn(*args: str, url: str) -> subprocess.Popen[str]:
    env = {**os.environ, "DATABASE_URL": url, "SUPABASE_JWT_SECRET": SECRET}
    return subprocess.Popen([sys.executable, "-m", "supabase_push", *args], env=env, text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _connected(url: str) -> bool:
    """The process has its LISTEN connection and its reader's connection open."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                           "AND application_name = 'supabase-push'").fetchone()
    return row is not None and int(row[0]) >= 2


def test_idle_tail_relay_and_forwarder_cost_next_to_nothing(make_db: DatabaseFactory, tmp_path: Path) -> None:
    """With the default intervals (verify 10 s, liveness 10 s), silent for longer than both: under 1 % of a
    core each and one or two change-log reads, where the bug cost ~43 % of a core and ~1,000 reads a second."""
    config = tmp_path / "alerts.toml"
    config.write_text("""
cursor_file = "forward.cursor"
dead_letter = "dead.jsonl"

[sinks.hook]
type = "webhook"
url = "http://127.0.0.1:9/never-called"

[[rules]]
name = "any trade"
table = "trades"
message = "{symbol}"
""")
    urls = {name: make_db("installed") for name in ("tail", "relay", "forward")}
    for url in urls.values():
        track_reads(url)
    procs = {
        "tail": _spawn("tail", "--from", "now", url=urls["tail"]),
        "relay": _spawn("relay", "--port", "0", url=urls["relay"]),
        "forward": _spawn("forward", "--config", str(config), url=urls["forward"]),
    }
    try:
        deadline = time.monotonic() + 60
        for name, url in urls.items():
            while not _connected(url):
                assert procs[name].poll() is None, f"{name} exited: {procs[name].communicate()}"
                assert time.monotonic() < deadline, f"{name} never connected"
                time.sleep(0.2)
        time.sleep(1)
        settle_stats()
        before = {name: reads(url) for name, url in urls.items()}
        cpu_before = {name: cpu_seconds(proc.pid) for name, proc in procs.items()}
        started = time.monotonic()
        time.sleep(13)  # past verify_interval and liveness_interval (10 s each)
        idle = time.monotonic() - started
        cpu = {name: cpu_seconds(proc.pid) - cpu_before[name] for name, proc in procs.items()}
        settle_stats()
        done = {name: reads(url) - before[name] for name, url in urls.items()}
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.communicate(timeout=30)
    for name in procs:
        # one verify read per 10 s of silence: one or two in 13 s, and one the statistics may have held back
        # from before the window (a backend that reported less than a second ago reports again up to 10 s later)
        assert 1 <= done[name] <= 3, f"{name}: {done[name]} change-log reads in {idle:.1f} s of silence"
        # Measured 0.09-0.20 s in 13 s: psycopg's notifies() wakes every 0.1 s to look for notifications
        # (about 1 % of a core); the busy-poll bug this guards against cost ~43 %.
        assert cpu[name] < 0.015 * idle + 0.05, f"{name}: {cpu[name]:.2f} s of CPU in {idle:.1f} s of silence"
