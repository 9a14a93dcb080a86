"""Alert forwarding against a real Postgres, a local SMTP server (aiosmtpd) and local HTTP sinks
that fail, then recover."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from supabase_push.config import Settings
from supabase_push.errors import ConfigError
from supabase_push.events import ChangeEvent, Cursor
from supabase_push.sinks import Forwarder, load_config, subscriber_for
from supabase_push.sinks.delivery import DeadLetters
from supabase_push.sinks.rules import Alert, Priority

from .sink_servers import HttpSinkServer, SmtpServer, fail_first

pytestmark = pytest.mark.slow

RULES = """
[[rules]]
name = "large trade"
table = "trades"
op = "INSERT"
when = "quantity * price >= 100000"
priority = "high"
message = "{side} {quantity} {symbol} @ {price}"

[[rules]]
name = "position loss"
topic = "position-updates"
when = "unrealized_pnl <= -5000"
priority = "critical"
message = "{symbol} is down {unrealized_pnl}"

[[rules]]
name = "any delete"
op = "DELETE"
message = "{table} row {id} deleted"
"""


def write_config(tmp_path: Path, sinks: str, rules: str = RULES) -> Path:
    path = tmp_path / "alerts.toml"
    path.write_text(textwrap.dedent(sinks) + rules)
    return path


def webhook_config(tmp_path: Path, url: str) -> Path:
    """The rules above, sent to one webhook sink named audit."""
    return write_config(tmp_path, f"""
        [sinks.audit]
        type = "webhook"
        url = "{url}"
    """)


@contextlib.asynccontextmanager
async def forwarding(dsn: str, config_file: Path, env: dict[str, str] | None = None) -> AsyncIterator[Forwarder]:
    config = load_config(config_file, env or {})
    subscriber = subscriber_for(config, Settings(database_url=dsn), transport="listen")
    forwarder = Forwarder(config, subscriber)
    task = asyncio.create_task(forwarder.run())
    await asyncio.wait_for(subscriber.wait_ready(), 10)
    try:
        yield forwarder
    finally:
        await forwarder.drain(5)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def dead_lettered(forwarder: Forwarder, sink: str, count: int, timeout: float = 10) -> None:
    """Until ``sink`` has given up on ``count`` alerts."""
    async with asyncio.timeout(timeout):
        while forwarder.stats()["sinks"][sink]["dead_lettered"] < count:
            await asyncio.sleep(0.05)


def trade(dsn: str, quantity: float, price: float, symbol: str = "AAPL") -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO trades (symbol, side, quantity, price) VALUES (%s, 'buy', %s, %s)",
                     (symbol, quantity, price))


async def test_rules_route_alerts_to_slack_email_and_a_webhook(installed_url: str, tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    slack, hook, smtp = HttpSinkServer(), HttpSinkServer(), SmtpServer().start()
    secret_path = "/services/T000/B000/s3cr3tT0k3n"
    config = write_config(tmp_path, f"""
        [sinks.desk]
        type = "slack"
        url = "${{SLACK_URL}}"
        min_priority = "high"

        [sinks.risk]
        type = "email"
        host = "127.0.0.1"
        port = {smtp.port}
        from = "alerts@desk.test"
        to = ["risk@desk.test", "cto@desk.test"]
        min_priority = "critical"

        [sinks.audit]
        type = "webhook"
        url = "{hook.url}/audit"
        headers = {{ Authorization = "Bearer audit-token" }}
    """)
    caplog.set_level(logging.DEBUG)
    try:
        async with forwarding(installed_url, config, {"SLACK_URL": slack.url + secret_path}):
            trade(installed_url, 1000, 150)  # 150,000: large
            trade(installed_url, 1, 10)  # small: nothing
            with psycopg.connect(installed_url, autocommit=True) as conn:
                conn.execute("INSERT INTO positions (symbol, quantity, unrealized_pnl) VALUES ('TSLA', 10, -6000)")
                conn.execute("DELETE FROM trades WHERE quantity = 1")
            audit = await asyncio.to_thread(hook.wait_for, 3)
            desk = await asyncio.to_thread(slack.wait_for, 2)
            mail = await asyncio.to_thread(smtp.wait_for, 1)
            await asyncio.sleep(0.3)
    finally:
        slack.close()
        hook.close()
        smtp.stop()

    audit = sorted(audit, key=lambda r: r.body["event"]["id"])  # the most urgent may overtake
    assert [r.body["rule"] for r in audit] == ["large trade", "position loss", "any delete"]
    assert [r.body["priority"] for r in audit] == ["high", "critical", "normal"]
    assert audit[0].body["message"] == "buy 1000 AAPL @ 150" and audit[2].body["message"].startswith("trades row ")
    assert audit[0].headers["Authorization"] == "Bearer audit-token"
    key = audit[0].body["key"]
    assert audit[0].headers["Idempotency-Key"] == key == f"{audit[0].body['event']['cursor']}/large trade"
    assert [r.path for r in desk] == [secret_path] * 2
    texts = sorted(r.body["text"] for r in desk)
    assert ":rotating_light: *position loss* (critical)\nTSLA is down -6000" in texts[0]
    assert ":warning: *large trade* (high)" in texts[1]
    assert len(mail) == 1 and mail[0]["Subject"] == "[CRITICAL] position loss: TSLA is down -6000"
    assert mail[0]["To"] == "risk@desk.test, cto@desk.test" and '"unrealized_pnl": -6000' in mail[0].get_payload()
    assert len(slack.received) == 2 and len(hook.received) == 3 and len(smtp.messages) == 1  # nothing twice
    assert "s3cr3tT0k3n" not in caplog.text and "audit-token" not in caplog.text


async def test_a_sink_that_fails_then_recovers_loses_nothing(installed_url: str, tmp_path: Path) -> None:
    hook = HttpSinkServer(fail_first(4))
    limited = HttpSinkServer(fail_first(1, 429, {"Retry-After": "0.2"}))
    config = write_config(tmp_path, f"""
        [sinks.flaky]
        type = "webhook"
        url = "{hook.url}"
        attempts = 6
        backoff = 0.05

        [sinks.busy]
        type = "webhook"
        url = "{limited.url}"
        backoff = 10
    """)
    try:
        async with forwarding(installed_url, config) as forwarder:
            for symbol in ("A", "B", "C"):
                trade(installed_url, 1000, 1000, symbol)
            got = await asyncio.to_thread(hook.wait_for, 3)
            busy = await asyncio.to_thread(limited.wait_for, 3, 5)  # in seconds: Retry-After, not the 10 s backoff
    finally:
        hook.close()
        limited.close()
    assert [r.body["message"].split()[2] for r in got] == ["A", "B", "C"]  # in order, each once
    assert len(busy) == 3
    stats = forwarder.stats()["sinks"]
    assert stats["flaky"]["retries"] == 4 and stats["flaky"]["sent"] == 3 and stats["busy"]["retries"] == 1
    assert not (tmp_path / "alerts.dead.jsonl").exists()


async def test_a_long_outage_goes_to_the_dead_letter_file_and_replays(installed_url: str, tmp_path: Path) -> None:
    smtp = SmtpServer()  # down
    rejecting = HttpSinkServer(lambda n: (400, {}))
    config = write_config(tmp_path, f"""
        dead_letter = "dead/letters.jsonl"

        [sinks.risk]
        type = "email"
        host = "127.0.0.1"
        port = {smtp.port}
        from = "alerts@desk.test"
        to = "risk@desk.test"
        attempts = 2
        backoff = 0.05

        [sinks.broken]
        type = "webhook"
        url = "{rejecting.url}"
        attempts = 5
    """)
    dead = tmp_path / "dead" / "letters.jsonl"
    try:
        async with forwarding(installed_url, config) as forwarder:
            trade(installed_url, 1000, 1000, "X")
            trade(installed_url, 1000, 1000, "Y")
            await dead_lettered(forwarder, "risk", 2)
        letters = [json.loads(line) for line in dead.read_text().splitlines()]
        assert sorted((e["sink"], e["attempts"]) for e in letters) == [("broken", 1)] * 2 + [("risk", 2)] * 2
        assert all("ConnectionRefusedError" in e["error"] for e in letters if e["sink"] == "risk")
        assert all("400" in e["error"] for e in letters if e["sink"] == "broken")  # permanent: no retries
        assert forwarder.stats()["cursor"] == letters[-1]["alert"]["event"]["cursor"]  # settled, not stuck

        smtp.start()
        replay = await asyncio.to_thread(subprocess.run, [
            sys.executable, "-m", "supabase_push", "forward", "--config", str(config), "--replay-dead-letters",
            "--json"], capture_output=True, text=True, timeout=60)
        outcomes = [json.loads(line) for line in replay.stdout.splitlines()]
        assert replay.returncode == 1  # the 400s fail again, and say so
        assert sorted((o["sink"], o["outcome"]) for o in outcomes if "sink" in o) == (
            [("broken", "dead-lettered")] * 2 + [("risk", "sent")] * 2)
        assert [m["Subject"].split(": ")[1] for m in smtp.messages] == ["buy 1000 X @ 1000", "buy 1000 Y @ 1000"]
        assert [json.loads(line)["sink"] for line in dead.read_text().splitlines()] == ["broken", "broken"]
    finally:
        smtp.stop()
        rejecting.close()


async def test_rate_limit_spaces_sends_and_the_most_urgent_goes_first(installed_url: str, tmp_path: Path) -> None:
    hook = HttpSinkServer()
    config = write_config(tmp_path, f"""
        [sinks.slow]
        type = "webhook"
        url = "{hook.url}"
        rate = "2/s"
    """)
    try:
        async with forwarding(installed_url, config):
            for n in range(5):
                trade(installed_url, 1000, 1000, f"N{n}")
            with psycopg.connect(installed_url, autocommit=True) as conn:
                conn.execute("INSERT INTO positions (symbol, quantity, unrealized_pnl) VALUES ('URGENT', 1, -9999)")
            got = await asyncio.to_thread(hook.wait_for, 6)
    finally:
        hook.close()
    order = [r.body["rule"] for r in got]
    assert order.index("position loss") <= 3  # queued last, sent well before the normal ones left
    gaps = [b.at - a.at for a, b in itertools.pairwise(got[1:])]  # after a burst of 2, one per 0.5 s
    assert min(gaps) >= 0.4, gaps


def test_stopped_and_restarted_it_resumes_where_it_left_off(installed_url: str, tmp_path: Path) -> None:
    hook = HttpSinkServer()
    config = webhook_config(tmp_path, hook.url)
    command = [sys.executable, "-m", "supabase_push", "forward", "--config", str(config), "--db-url", installed_url,
               "--transport", "listen", "--json", "--from", "0:0"]  # the first run: a fresh log; then the file's

    def run_until(count: int) -> tuple[int, list[dict[str, object]]]:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        try:
            hook.wait_for(count)
        finally:
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=30)
        return proc.returncode, [json.loads(line) for line in out.splitlines()]

    try:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        trade(installed_url, 1000, 1000, "BEFORE")
        hook.wait_for(1)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert json.loads(out.splitlines()[-1])["events"] == 1

        trade(installed_url, 1000, 1000, "WHILE-DOWN")
        trade(installed_url, 1, 1, "NO-ALERT")
        code, lines = run_until(2)
    finally:
        hook.close()
    assert code == 0
    assert [r.body["message"] for r in hook.received] == ["buy 1000 BEFORE @ 1000", "buy 1000 WHILE-DOWN @ 1000"]
    assert lines[-1]["final"] and lines[-1]["events"] == 2


@pytest.mark.parametrize(("toml", "needle"), [
    ("[sinks.a]\ntype = 'pager'\n", "unknown type 'pager'"),
    ("[sinks.a]\ntype = 'webhook'\n", "url is required"),
    ("[sinks.a]\ntype = 'webhook'\nurl = 'ftp://x'\n", "not an http(s) URL"),
    ("[sinks.a]\ntype = 'webhook'\nurl = 'http://x'\nrate = 'lots'\n", "not a rate: 'lots'"),
    ("[sinks.a]\ntype = 'webhook'\nurl = '${NOT_SET_ANYWHERE}'\n", "${NOT_SET_ANYWHERE}, which is not set"),
    ("[sinks.a]\ntype = 'webhook'\nurl = 'http://x'\n[[rules]]\nname = 'r'\nwhen = 'price >'\n", "is not valid"),
    ("[sinks.a]\ntype = 'webhook'\nurl = 'http://x'\n[[rules]]\nname = 'r'\nwhen = '__import__(\"os\")'\n",
     "the only function is abs(x)"),
    ("[sinks.a]\ntype = 'webhook'\nurl = 'http://x'\n[[rules]]\nname = 'r'\nsinks = ['b']\n",
     "'b', which is not a sink"),
    ("[sinks.a]\ntype = 'webhook'\nurl = 'http://x'\n[[rules]]\nname = 'r'\npriority = 'urgent'\n",
     "unknown priority 'urgent'"),
    ("[sinks.a]\ntype = 'webhook'\nurl = 'http://x'\n[[rules]]\nname = 'r'\nmessage = '{row.__class__}'\n",
     "plain column name"),
    ("[sinks.a]\ntype = 'webhook'\nurl = 'http://x'\n", "no [[rules]]"),
    ("sinks = 3", "no [sinks.<name>] table"),
    ("[sinks.a\n", "not valid TOML"),
])
def test_bad_configuration_is_a_clear_error(tmp_path: Path, toml: str, needle: str) -> None:
    path = tmp_path / "alerts.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as raised:
        load_config(path, {})
    assert needle in str(raised.value)


def test_cli_check_prints_the_plan_and_bad_files_exit_2(tmp_path: Path) -> None:
    good = write_config(tmp_path, """
        [sinks.desk]
        type = "slack"
        url = "https://hooks.slack.com/services/T0/B0/secret-part"
        rate = "20/min"
    """)
    checked = subprocess.run([sys.executable, "-m", "supabase_push", "forward", "--config", str(good), "--check"],
                             capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
    assert "slack desk at https://hooks.slack.com" in checked.stdout and "secret-part" not in checked.stdout
    assert "rule 'large trade' (high) when quantity * price >= 100000 → all" in checked.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("[sinks.a]\ntype = 'pager'\n")
    refused = subprocess.run([sys.executable, "-m", "supabase_push", "forward", "--config", str(bad), "--check"],
                             capture_output=True, text=True, timeout=30, env={**os.environ, "COLUMNS": "200"})
    assert refused.returncode == 2 and "unknown type 'pager'" in refused.stderr


def test_the_example_config_loads() -> None:
    example = Path(__file__).resolve().parent.parent / "examples" / "alerts.toml"
    env = {name: "https://hooks.example.test/x" if name.endswith("URL") else "value" for name in (
        "SLACK_WEBHOOK_URL", "SMTP_HOST", "SMTP_USER", "SMTP_PASSWORD", "AUDIT_WEBHOOK_URL", "AUDIT_TOKEN")}
    config = load_config(example, env)
    assert [r.name for r in config.rules] == ["large trade", "position loss", "position closed", "any delete"]
    assert [w.sink.name for w in config.workers] == ["desk", "risk", "audit"]


async def test_a_sink_that_hangs_times_out_and_nothing_is_lost(installed_url: str, tmp_path: Path) -> None:
    hanging = socket.socket()  # accepts connections (the kernel does), never answers
    hanging.bind(("127.0.0.1", 0))
    hanging.listen(16)
    config = write_config(tmp_path, f"""
        [sinks.stuck]
        type = "webhook"
        url = "http://127.0.0.1:{hanging.getsockname()[1]}/hook"
        timeout = 0.3
        attempts = 2
        backoff = 0.05
    """)
    try:
        async with forwarding(installed_url, config) as forwarder:
            trade(installed_url, 1000, 1000, "HANG")
            await dead_lettered(forwarder, "stuck", 1)
    finally:
        hanging.close()
    [letter] = [json.loads(line) for line in (tmp_path / "alerts.dead.jsonl").read_text().splitlines()]
    assert letter["attempts"] == 2 and "ReadTimeout" in letter["error"]
    assert letter["alert"]["message"] == "buy 1000 HANG @ 1000"


def test_dry_run_shows_what_the_rules_would_send_over_history(installed_url: str, tmp_path: Path) -> None:
    hook = HttpSinkServer()
    config = write_config(tmp_path, f"""
        [sinks.audit]
        type = "webhook"
        url = "{hook.url}"

        [sinks.pager]
        type = "webhook"
        url = "{hook.url}"
        min_priority = "critical"
    """)
    trade(installed_url, 1000, 1000, "OLD-BIG")
    trade(installed_url, 1, 1, "OLD-SMALL")
    with psycopg.connect(installed_url, autocommit=True) as conn:
        conn.execute("INSERT INTO positions (symbol, quantity, unrealized_pnl) VALUES ('OLD-LOSS', 1, -7000)")
    try:
        proc = subprocess.run([sys.executable, "-m", "supabase_push", "forward", "--config", str(config),
                               "--db-url", installed_url, "--dry-run", "--json"],
                              capture_output=True, text=True, timeout=60)
        bad = subprocess.run([sys.executable, "-m", "supabase_push", "forward", "--config", str(config),
                              "--db-url", installed_url, "--dry-run", "--from", "yesterday"],
                             capture_output=True, text=True, timeout=60)
        trade(installed_url, 1000, 1000, "[/oops]")  # row data is never console markup
        plain = subprocess.run([sys.executable, "-m", "supabase_push", "forward", "--config", str(config),
                                "--db-url", installed_url, "--dry-run"], capture_output=True, text=True, timeout=60,
                               env={**os.environ, "COLUMNS": "200"})
    finally:
        hook.close()
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(line["rule"], line["sinks"]) for line in lines] == [
        ("large trade", ["audit"]), ("position loss", ["audit", "pager"])]
    assert lines[0]["message"] == "buy 1000 OLD-BIG @ 1000"
    assert hook.requests == 0 and not (tmp_path / "alerts.cursor").exists()
    assert bad.returncode == 2 and "not a cursor" in bad.stderr
    assert plain.returncode == 0, plain.stderr
    assert "would send high     large trade → audit" in plain.stdout and "buy 1000 [/oops] @ 1000" in plain.stdout
    assert "3 alert(s) from 0:0 to now; nothing was sent" in plain.stderr


async def test_changes_pruned_before_forwarding_are_an_alert_of_their_own(installed_url: str, tmp_path: Path) -> None:
    from datetime import timedelta

    from supabase_push import schema

    hook = HttpSinkServer()
    config = write_config(tmp_path, f"""
        [sinks.audit]
        type = "webhook"
        url = "{hook.url}"
        min_priority = "high"
    """)
    try:
        async with forwarding(installed_url, config):
            trade(installed_url, 1000, 1000, "SEEN")
            await asyncio.to_thread(hook.wait_for, 1)
        trade(installed_url, 1000, 1000, "NEVER-SEEN")  # written while stopped, then pruned
        with psycopg.connect(installed_url, autocommit=True) as conn:
            pruned = schema.prune(conn, timedelta(0))
        async with forwarding(installed_url, config):
            got = await asyncio.to_thread(hook.wait_for, 2)
    finally:
        hook.close()
    gap = got[1].body
    assert gap["rule"] == "supabase-push: changes pruned before forwarding" and gap["priority"] == "critical"
    assert f"up to {pruned.pruned_through} were pruned" in gap["message"]
    assert [r.body["rule"] for r in got] == ["large trade", "supabase-push: changes pruned before forwarding"]


async def test_a_second_forwarder_on_the_same_cursor_file_is_refused(installed_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path, """
        [sinks.audit]
        type = "webhook"
        url = "http://127.0.0.1:9/never-called"
    """)
    async with forwarding(installed_url, config):
        second = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "supabase_push", "forward", "--config", str(config),
                             "--db-url", installed_url], capture_output=True, text=True, timeout=60)
    assert second.returncode == 2, second.stderr
    assert "is in use by another subscriber" in second.stderr


async def test_a_line_break_in_a_templated_value_neither_injects_a_header_nor_stops_the_worker(
        installed_url: str, tmp_path: Path) -> None:
    """Regression: a symbol holding CR/LF killed the email worker, silently; later alerts never went out."""
    smtp = SmtpServer().start()
    config = write_config(tmp_path, f"""
        [sinks.risk]
        type = "email"
        host = "127.0.0.1"
        port = {smtp.port}
        from = "alerts@desk.test"
        to = ["risk@desk.test"]
    """)
    try:
        async with forwarding(installed_url, config):
            trade(installed_url, 1000, 150, "EVIL\r\nBcc: attacker@evil.test")
            trade(installed_url, 1000, 150, "NEXT")
            mail = await asyncio.to_thread(smtp.wait_for, 2)
    finally:
        smtp.stop()
    subjects = sorted(str(m["Subject"]) for m in mail)
    assert subjects == ["[HIGH] large trade: buy 1000 EVIL Bcc: attacker@evil.test @ 150",
                        "[HIGH] large trade: buy 1000 NEXT @ 150"]
    assert all(m["Bcc"] is None for m in mail)


async def test_a_sink_that_raises_unexpectedly_dead_letters_and_goes_on(installed_url: str, tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    hook = HttpSinkServer()
    config_file = webhook_config(tmp_path, hook.url)
    try:
        async with forwarding(installed_url, config_file) as forwarder:
            worker = forwarder.config.workers[0]
            send = worker.sink.send

            async def flaky(alert: Any) -> None:
                if "BUG" in alert.message:
                    raise RuntimeError("a bug in the sink")
                await send(alert)

            worker.sink.send = flaky  # type: ignore[method-assign]
            trade(installed_url, 1000, 150, "BUG")
            trade(installed_url, 1000, 150, "FINE")
            await asyncio.to_thread(hook.wait_for, 1)
            await dead_lettered(forwarder, "audit", 1)
    finally:
        hook.close()
    assert [r.body["message"] for r in hook.received] == ["buy 1000 FINE @ 150"]
    [letter] = [json.loads(line) for line in (tmp_path / "alerts.dead.jsonl").read_text().splitlines()]
    assert letter["error"] == "RuntimeError: a bug in the sink" and letter["attempts"] == 1
    assert "a bug in the sink" in caplog.text


def test_a_bad_dead_letter_line_is_kept_aside_and_the_replay_finishes(installed_url: str, tmp_path: Path) -> None:
    """Regression: one bad line: traceback, exit 1, `.replaying` left behind (and the next replay hung)."""
    hook = HttpSinkServer()
    config = webhook_config(tmp_path, hook.url)
    dead = tmp_path / "alerts.dead.jsonl"
    try:
        event = ChangeEvent(id=1, cursor=Cursor(1, 1), topic="trade-updates", schema="public", table="trades",
                            op="INSERT", record={"symbol": "OK"}, commit_ts=datetime.now(UTC))
        DeadLetters(dead).add("audit", Alert("large trade", Priority.HIGH, "replayed", event, ()), "was down", 5)
        with dead.open("a") as f:
            f.write('{"sink": "audit", "alert": {"cut sho\n')
        assert load_config(config).dead_letters.path == dead
        replay = subprocess.run([sys.executable, "-m", "supabase_push", "forward", "--config", str(config),
                                 "--replay-dead-letters"], capture_output=True, text=True, timeout=60)
    finally:
        hook.close()
    assert replay.returncode == 0, replay.stderr
    assert "Traceback" not in replay.stderr and "is not a dead letter" in replay.stderr
    assert [r.body["message"] for r in hook.received] == ["replayed"]
    assert not (tmp_path / "alerts.dead.jsonl.replaying").exists()
    assert (tmp_path / "alerts.dead.jsonl.unreadable").read_text() == '{"sink": "audit", "alert": {"cut sho\n'


async def test_a_numeric_past_a_double_is_forwarded_exactly(installed_url: str, tmp_path: Path) -> None:
    """Regression: `forward` crashed on every restart at a row holding trunc(10::numeric ^ 5000)."""
    hook = HttpSinkServer()
    config = webhook_config(tmp_path, hook.url)
    try:
        async with forwarding(installed_url, config):
            with psycopg.connect(installed_url, autocommit=True) as conn:
                conn.execute("INSERT INTO trades (symbol, side, quantity, price) "
                             "VALUES ('HUGE', 'buy', trunc(10::numeric ^ 5000), 1)")
            trade(installed_url, 1000, 150, "NEXT")
            received = await asyncio.to_thread(hook.wait_for, 2)
    finally:
        hook.close()
    messages = sorted(r.body["message"] for r in received)
    assert messages == ["buy 1000 NEXT @ 150", f"buy 1{'0' * 5000} HUGE @ 1"]


async def test_slack_escapes_row_values_and_a_huge_retry_after_is_capped(installed_url: str, tmp_path: Path) -> None:
    """A symbol `<!channel>` is shown as typed, not a mention of everyone; `Retry-After: 100000` waits the
    backoff ceiling, not a day; the dead-letter file is the owner's alone (it holds whole rows)."""
    slack = HttpSinkServer(fail_first(1, 429, {"Retry-After": "100000"}))
    config = write_config(tmp_path, f"""
        [sinks.desk]
        type = "slack"
        url = "{slack.url}"
        min_priority = "high"
        max_backoff = 0.5

        [sinks.audit]
        type = "webhook"
        url = "http://127.0.0.1:9/refused"
        attempts = 1
    """)
    try:
        async with forwarding(installed_url, config):
            trade(installed_url, 1000, 150, "<!channel> & <https://evil.test|bank>")
            [received] = await asyncio.to_thread(slack.wait_for, 1, 10)  # after the 429: within seconds
            assert slack.requests == 2
    finally:
        slack.close()
    text = received.body["text"]
    assert "&lt;!channel&gt; &amp; &lt;https://evil.test|bank&gt;" in text and "<!channel>" not in text
    for private in (tmp_path / "alerts.dead.jsonl", tmp_path / "alerts.cursor"):
        assert private.exists() and private.stat().st_mode & 0o777 == 0o600, private
