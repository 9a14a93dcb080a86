"""``supabase-push tail``: live events exactly once, --json lines, state on stderr, exit codes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import conninfo
from typer.testing import CliRunner

from supabase_push.cli import app
from supabase_push.local import LocalRealtime

from .postgrest import free_port
from .subscriber_helpers import logged, write

runner = CliRunner()


def tail(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "supabase_push", "tail", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


def until_state(proc: subprocess.Popen[str], state: str) -> None:
    """Read tail's status lines (it needs ``--stats-every``) until one says ``state``: e.g. its push transport is
    up and the log read, so a change written from now on arrives by push."""
    assert proc.stderr is not None
    while state not in (line := proc.stderr.readline()):
        assert line, f"tail ended before it was {state}"


def insert(url: str, *symbols: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for symbol in symbols:
            conn.execute("INSERT INTO trades (symbol, side, quantity, price) VALUES (%s, 'buy', 1, 1)", (symbol,))


def test_tail_json_reads_the_log_then_follows_live(installed_url: str) -> None:
    insert(installed_url, "OLD1", "OLD2")
    proc = tail("--db-url", installed_url, "--json", "--count", "4", "--timeout", "30", "--topic", "trade-updates",
                "--stats-every", "0.2")
    until_state(proc, '"state": "push:listen"')
    insert(installed_url, "NEW1", "NEW2")
    out, err = proc.communicate(timeout=40)
    assert proc.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["record"]["symbol"] for e in events] == ["OLD1", "OLD2", "NEW1", "NEW2"]
    assert [e["source"] for e in events] == ["catch-up", "catch-up", "listen", "listen"]
    assert all(e["topic"] == "trade-updates" and e["op"] == "INSERT" and e["lag_ms"] >= 0 for e in events)
    final = json.loads(err.strip().splitlines()[-1])
    assert final["final"] and final["stats"]["delivered"] == {"catch-up": 2, "listen": 2}
    assert final["stats"]["state"] == "stopped" and final["stats"]["cursor"] == events[-1]["cursor"]


def test_tail_through_the_local_realtime_server(realtime: LocalRealtime, realtime_db: str) -> None:
    env = {"SUPABASE_URL": realtime.url, "SUPABASE_SERVICE_ROLE_KEY": realtime.service_role_key}
    proc = tail("--db-url", realtime_db, "--from", "now", "--count", "2", "--timeout", "30",
                "--filter", "symbol=eq.RT", "--topic", "trade-updates", "--stats-every", "0.2", env=env)
    until_state(proc, "push:realtime")
    insert(realtime_db, "SKIP", "RT", "SKIP", "RT")
    out, err = proc.communicate(timeout=40)
    assert proc.returncode == 0, err
    lines = [line for line in out.splitlines() if "INSERT" in line]
    assert len(lines) == 2 and all('"symbol":"RT"' in line for line in lines)
    assert "realtime" in lines[0] or "catch-up" in lines[0]
    assert "push:realtime" in err.splitlines()[-1] or "stopped" in err.splitlines()[-1]
    assert realtime.service_role_key not in out + err


def test_tail_count_not_reached_exits_1(installed_url: str) -> None:
    result = runner.invoke(app, ["tail", "--db-url", installed_url, "--count", "1", "--timeout", "1", "--json"])
    assert result.exit_code == 1


@pytest.mark.parametrize(("args", "message"), [
    ([], "nothing to read the change log through"),
    (["--db-url", "postgresql://u@127.0.0.1:1/x", "--filter", "symbol~SPY"], "not a row filter"),
    (["--db-url", "postgresql://u@127.0.0.1:1/x", "--from", "yesterday"], "not a cursor"),
    (["--db-url", "postgresql://u@127.0.0.1:1/x", "--transport", "carrier-pigeon"], "unknown transport"),
])
def test_tail_bad_configuration_exits_2(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["tail", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def _wrong_password(url: str) -> str:
    info = conninfo.conninfo_to_dict(url)
    return url.replace(f":{info['password']}@", ":not-the-password@")


def test_tail_with_a_wrong_password_exits_2_at_once(installed_url: str) -> None:
    """Regression: it retried until --timeout, then exited 0 with "delivered none yet"."""
    started = time.monotonic()
    proc = tail("--db-url", _wrong_password(installed_url), "--timeout", "20")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert time.monotonic() - started < 15, "a refused password is final: no need to wait for --timeout"
    assert "refused the credentials" in err and "hint: check the user and password" in err
    assert err.count("password authentication failed") == 1, err  # said once
    assert "not-the-password" not in out + err


def test_tail_with_a_wrong_key_exits_2(realtime: LocalRealtime) -> None:
    """Only SUPABASE_URL and a key that the server refuses (Realtime and its /rest/v1 gateway: 401): not a
    quiet success, and the refusal named."""
    env = {"SUPABASE_URL": realtime.url, "SUPABASE_SERVICE_ROLE_KEY": "not-a-key"}
    proc = tail("--timeout", "3", env=env)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert "401 Invalid API key" in err and "check the key" in err
    assert "not-a-key" not in out + err


def test_tail_to_a_server_that_never_answers_exits_1(tmp_path: Path) -> None:
    """A socket that accepts and says nothing: after --timeout, exit 1 naming what never answered."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        proc = tail("--db-url", f"postgresql://postgres:pw@127.0.0.1:{port}/postgres", "--timeout", "3")
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert f"never connected, nothing was read: no answer from SQL at postgres@127.0.0.1:{port}" in err


def test_tail_says_a_repeated_failure_once_with_a_count() -> None:
    """A database that is down: one warning and a count, not one warning per retry."""
    proc = tail("--db-url", f"postgresql://postgres:pw@127.0.0.1:{free_port()}/postgres", "--timeout", "4")
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert err.count("reading the change log failed") == 1, err
    failures = int(err.split("read failures ")[1].split()[0])
    assert failures >= 3, err
    assert "never connected" in err and "cannot reach the database" in err


def test_a_second_tail_on_the_same_cursor_file_is_refused(installed_url: str, tmp_path: Path) -> None:
    """Regression: two tails on one cursor file raced on its .tmp; one exited 0 after seven lines."""
    cursor_file = str(tmp_path / "shared.cursor")
    first = tail("--db-url", installed_url, "--cursor-file", cursor_file, "--json")
    try:
        time.sleep(2)
        insert(installed_url, "ONE")
        second = tail("--db-url", installed_url, "--cursor-file", cursor_file, "--timeout", "10")
        _out, err = second.communicate(timeout=60)
        assert second.returncode == 2, err
        assert "is in use by another subscriber" in err
        assert first.poll() is None, "the first owner goes on"
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=30)
    assert first.returncode == 0


@pytest.mark.parametrize(("cursor", "message"), [
    ("999999:1", "ahead of the change log's newest change"),
    ("99999999999999999999999:1", "past the largest position"),
])
def test_a_cursor_ahead_of_the_log_is_refused(installed_url: str, tmp_path: Path, cursor: str, message: str) -> None:
    """Regression: a cursor file from another database gave 0 events and exit 0; one past bigint warned for ever."""
    cursor_file = tmp_path / "other-database.cursor"
    cursor_file.write_text(cursor)
    insert(installed_url, "HERE")
    proc = tail("--db-url", installed_url, "--cursor-file", str(cursor_file), "--timeout", "10")
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert message in err and "Traceback" not in err
    from_flag = tail("--db-url", installed_url, "--from", cursor, "--timeout", "10")
    _out, err = from_flag.communicate(timeout=60)
    assert from_flag.returncode == 2 and message in err, err


def test_tail_process_restarted_with_a_cursor_file_loses_nothing(installed_url: str, tmp_path: Path) -> None:
    """8 writers, 2,000 changes; the tail process is stopped (SIGTERM) midway and started again
    with the same cursor file: together the two runs print every change once, in order."""
    cursor_file = str(tmp_path / "cursor")
    args = ("--db-url", installed_url, "--json", "--cursor-file", cursor_file, "--poll-interval", "0.1")
    writers = threading.Thread(target=lambda: asyncio.run(write(installed_url)))
    first = tail(*args)
    writers.start()
    assert first.stdout is not None
    lines = [first.stdout.readline() for _ in range(700)]
    first.send_signal(signal.SIGTERM)
    # Read on through the text wrapper: communicate() reads the pipe itself and would drop what
    # readline() has already buffered past line 700 (lost lines that the cursor file accounts for).
    lines += first.stdout.read().splitlines()
    first.communicate(timeout=30)
    assert first.returncode == 0
    writers.join()
    printed = [json.loads(line)["cursor"] for line in lines if line.strip()]
    assert printed[-1] == Path(cursor_file).read_text()
    second = tail(*args, "--count", str(len(logged(installed_url)) - len(printed)), "--timeout", "60")
    out, err = second.communicate(timeout=90)
    assert second.returncode == 0, err
    printed += [json.loads(line)["cursor"] for line in out.splitlines()]
    assert printed == logged(installed_url)


def test_tail_prints_each_kind_of_event_on_a_line_of_its_own(installed_url: str) -> None:
    """The human output: a snapshot's row, then each change, whatever their text holds (a row with brackets in
    it is printed as it is, not read as markup)."""
    insert(installed_url, "[bold]OLD[/]")
    proc = tail("--db-url", installed_url, "--from", "snapshot", "--count", "4", "--timeout", "30",
                "--topic", "trade-updates", "--stats-every", "0.2")
    until_state(proc, "push:listen")
    with psycopg.connect(installed_url, autocommit=True) as conn:
        conn.execute("INSERT INTO trades (symbol, side, quantity, price) VALUES ('[/]NEW', 'buy', 1, 1)")
        conn.execute("UPDATE trades SET price = 2 WHERE symbol = '[/]NEW'")
        conn.execute("DELETE FROM trades WHERE symbol = '[/]NEW'")
    out, err = proc.communicate(timeout=40)
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert [line.split()[1] for line in lines] == ["SNAPSHOT", "INSERT", "UPDATE", "DELETE"], out
    assert '"symbol":"[bold]OLD[/]"' in lines[0] and all('"symbol":"[/]NEW"' in line for line in lines[1:]), out
