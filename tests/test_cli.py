"""The supabase-push command: output, --json, exit codes, and the errors users hit."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from supabase_push._sql import SCHEMA_VERSION
from supabase_push.cli import app

runner = CliRunner()


def run(*args: str, env: dict[str, str] | None = None) -> Any:
    return runner.invoke(app, list(args), env=env)


def test_apply_verify_status_uninstall(db_url: str) -> None:
    result = run("apply", "--db-url", db_url)
    assert result.exit_code == 0, result.output
    assert f"Applied supabase-push schema v{SCHEMA_VERSION}" in result.output
    assert "public.positions -> position-updates (position_change_trigger, added)" in result.output
    again = run("apply", "--db-url", db_url)
    assert again.exit_code == 0 and "Already up to date" in again.output

    verify = run("verify", "--db-url", db_url)
    assert verify.exit_code == 0, verify.output
    assert "checks passed" in verify.output

    status = run("status", "--json", "--db-url", db_url)
    assert status.exit_code == 0
    assert json.loads(status.stdout)["installed"] is True

    removed = run("uninstall", "--yes", "--json", "--db-url", db_url)
    assert removed.exit_code == 0
    assert json.loads(removed.stdout) == {"ok": True, "removed": True, "local_server_objects": []}
    status = run("status", "--db-url", db_url)
    assert status.exit_code == 0 and "not installed" in status.output


def test_database_url_from_environment(db_url: str) -> None:
    result = run("apply", "--json", env={"DATABASE_URL": db_url})
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ok"] and data["changed"] and len(data["routes"]) == 3


def test_verify_names_what_is_missing_and_exits_1(installed_url: str) -> None:
    with psycopg.connect(installed_url, autocommit=True) as conn:
        conn.execute("DROP TRIGGER portfolio_update_trigger ON portfolio_snapshots")
    result = run("verify", "--db-url", installed_url)
    assert result.exit_code == 1
    assert "portfolio_update_trigger" in result.output and "missing" in result.output
    as_json = run("verify", "--json", "--db-url", installed_url)
    assert as_json.exit_code == 1
    report = json.loads(as_json.stdout)
    assert report["ok"] is False
    assert [c["name"] for c in report["checks"] if c["status"] == "missing"] == [
        "portfolio_update_trigger on public.portfolio_snapshots"]


def test_verify_on_an_empty_database_exits_1(db_url: str) -> None:
    result = run("verify", "--db-url", db_url)
    assert result.exit_code == 1 and "not installed" in result.output


def test_custom_routes_and_create_tables(make_db: Any) -> None:
    url = make_db("empty")
    result = run("apply", "--create-tables", "-t", "trades=fills", "-t", "positions=pos",
                 "--db-url", url)
    assert result.exit_code == 0, result.output
    assert "public.trades -> fills" in result.output and "public.positions -> pos" in result.output


def test_apply_lists_what_changed_and_removes_routes_only_with_replace(installed_url: str) -> None:
    result = run("apply", "-t", "trades=trade-updates", "--db-url", installed_url, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Already up to date" in result.output
    for route in ("public.positions -> position-updates", "public.portfolio_snapshots -> portfolio-updates"):
        assert route in result.output
    moved = run("apply", "-t", "trades=fills", "--db-url", installed_url, env={"COLUMNS": "200"})
    assert "~ public.trades -> fills (trade_executed_trigger, was trade-updates)" in moved.output
    replaced = run("apply", "-t", "trades=fills", "--replace", "--db-url", installed_url, "--json")
    report = json.loads(replaced.stdout)
    assert sorted(report["removed"]) == ["public.portfolio_snapshots -> portfolio-updates",
                                         "public.positions -> position-updates"]
    assert [r["table_name"] for r in report["routes"]] == ["trades"]
    shown = run("apply", "--replace", "--db-url", installed_url, env={"COLUMNS": "200"})  # back to the defaults
    assert "+ public.positions -> position-updates (position_change_trigger, added)" in shown.output
    assert "~ public.trades -> trade-updates (trade_executed_trigger, was fills)" in shown.output


def test_dry_run_prints_sql_and_changes_nothing(db_url: str) -> None:
    result = run("apply", "--dry-run", "--db-url", db_url)
    assert result.exit_code == 0
    assert "CREATE OR REPLACE FUNCTION supabase_push.capture_change_v1()" in result.stdout
    assert "set_config('supabase_push.routes'" in result.stdout
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT to_regnamespace('supabase_push')").fetchone() == (None,)
    assert "DROP SCHEMA IF EXISTS supabase_push CASCADE" in run("uninstall", "--dry-run").stdout


def test_no_database_url_exits_2() -> None:
    result = run("verify")
    assert result.exit_code == 2
    assert "error: no database URL" in result.stderr
    assert "DATABASE_URL" in result.stderr
    as_json = run("status", "--json")
    assert as_json.exit_code == 2 and json.loads(as_json.stdout)["type"] == "ConfigError"


def test_malformed_url_and_route_exit_2(db_url: str) -> None:
    assert run("status", "--db-url", "postgresql://[oops").exit_code == 2
    bad = run("apply", "-t", "no-topic-here", "--db-url", db_url)
    assert bad.exit_code == 2 and "TABLE=TOPIC" in bad.stderr
    assert run("apply", "--broadcast", "carrier-pigeon", "--db-url", db_url).exit_code == 2


def test_missing_table_is_one_clear_line(make_db: Any) -> None:
    result = run("apply", "--db-url", make_db("empty"))
    assert result.exit_code == 1
    assert "error: table public.positions does not exist" in result.stderr
    assert "--create-tables" in result.stderr
    assert "Traceback" not in result.output


def test_wrong_password_is_an_auth_error_and_never_printed(db_url: str) -> None:
    user_and_password = db_url.split("//")[1].split("@")[0]
    wrong = db_url.replace(user_and_password, "postgres:not-the-password-42")
    result = run("status", "--db-url", wrong)
    if result.exit_code == 0:
        pytest.skip("this server trusts TCP connections without a password")
    assert result.exit_code == 1
    assert "refused the credentials" in result.stderr
    assert "not-the-password-42" not in result.output


def test_unreachable_host_is_one_clear_line() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run("status", "--db-url", f"postgresql://u:secret-pw@127.0.0.1:{port}/db")
    assert result.exit_code == 1
    assert "cannot reach the database at u@127.0.0.1" in result.stderr
    assert "secret-pw" not in result.output and "Traceback" not in result.output


@pytest.fixture
def hanging_server() -> Iterator[int]:
    """Accepts TCP connections and never answers: a server that hangs."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_hanging_server_times_out(hanging_server: int) -> None:
    started = time.monotonic()
    result = run("status", "--db-url", f"postgresql://u@127.0.0.1:{hanging_server}/db",
                 env={"SUPABASE_PUSH_CONNECT_TIMEOUT": "2"})
    assert result.exit_code == 1
    assert "cannot reach the database" in result.stderr
    assert "SUPABASE_PUSH_CONNECT_TIMEOUT" in result.stderr
    assert time.monotonic() - started < 15


def test_uninstall_asks_for_confirmation(installed_url: str) -> None:
    result = run("uninstall", "--db-url", installed_url)
    assert result.exit_code != 0
    with psycopg.connect(installed_url) as conn:
        assert conn.execute("SELECT to_regnamespace('supabase_push') IS NOT NULL").fetchone() == (True,)


def test_help_and_version() -> None:
    result = run("--help")
    assert result.exit_code == 0
    for command in ("apply", "verify", "uninstall", "status", "demo"):
        assert command in result.output
    assert "DATABASE_URL" in run("apply", "--help").output
    assert run("--version").output.startswith("supabase-push ")


@pytest.mark.parametrize("command", ["apply", "tail", "broadcast", "serve", "relay", "forward", "prune", "doctor"])
def test_help_uses_the_classic_conventions(command: str) -> None:
    """Regression: flags looked as if they took values (``--json <bool>``, ``-t <list[str]>``)."""
    result = subprocess.run([sys.executable, "-m", "supabase_push", command, "--help"], capture_output=True,
                            text=True, timeout=60, env={**os.environ, "COLUMNS": "100"})
    assert result.returncode == 0, result.stderr
    options = [line for line in result.stdout.splitlines() if line.lstrip("│ *").startswith("-")]
    assert options
    for line in options:
        assert not any(t in line for t in ("<bool>", "<str>", "<list[", "<float>", "<int>")), line
    assert "--json " in result.stdout and "--help " in result.stdout
    assert "…" not in result.stdout, "help text cut off"


def test_console_script_runs_the_demo() -> None:
    """The README's first command, as a user runs it: the real executable, a real cluster."""
    exe = shutil.which("supabase-push") or f"{sys.executable} -m supabase_push"
    done = subprocess.run([*exe.split(), "demo", "--json", "--duration", "3"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["ok"] and summary["lost"] == 0 and summary["duplicates"] == 0
    assert all(summary["by_table"][t] > 0 for t in ("positions", "trades", "portfolio_snapshots"))
    assert set(summary["transports"]) == {"realtime", "listen", "poll"}


def test_help_lists_the_commands_in_their_order() -> None:
    """Setting up first, then running, then watching, then sending: the order --help has always shown
    (the command modules register in it)."""
    import typer

    assert list(typer.main.get_command(app).commands) == [  # type: ignore[attr-defined]
        "apply", "verify", "uninstall", "status", "prune", "stamp", "demo", "serve", "doctor", "tail", "relay",
        "forward", "broadcast", "publish"]
