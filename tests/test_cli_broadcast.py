"""``supabase-push broadcast``: one message from the shell, received by the official client."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import psycopg

from supabase_push.local import LocalRealtime

from .realtime_helpers import unique
from .test_broadcast import listening


async def cli(*args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "supabase_push", "broadcast", *args], input=stdin,
        capture_output=True, text=True, timeout=60, env={**os.environ, **env})


def supabase(server: LocalRealtime, key: str | None = None) -> dict[str, str]:
    return {"SUPABASE_URL": server.url, "SUPABASE_SERVICE_ROLE_KEY": key or server.service_role_key}


async def test_broadcast_data_and_stdin_reach_a_subscriber(realtime: LocalRealtime) -> None:
    topic = unique("cli")
    async with listening(realtime, topic, private=True) as private, \
            listening(realtime, topic, private=False) as public:
        sent = await cli(topic, "fill", "--data", '{"symbol": "SPY", "price": 13.5}', **supabase(realtime))
        assert sent.returncode == 0, sent.stderr
        assert f"sent {topic}/fill" in sent.stdout and "private" in sent.stdout
        piped = await cli(topic, "fill", "--public", "--json", stdin='{"symbol": "QQQ"}', **supabase(realtime))
        assert piped.returncode == 0, piped.stderr
        report = json.loads(piped.stdout)
        assert report["ok"] is True and report["backend"] == "rest" and report["private"] is False
        await private.wait_for(lambda m: m["payload"] == {"symbol": "SPY", "price": 13.5})
        await public.wait_for(lambda m: m["payload"] == {"symbol": "QQQ"})


async def test_broadcast_through_notify(realtime_db: str) -> None:
    topic = unique("cli")
    async with await psycopg.AsyncConnection.connect(realtime_db, autocommit=True) as listener:
        await listener.execute(f'LISTEN "{topic}"')
        sent = await cli(topic, "ping", "--data", '{"n": 1}', DATABASE_URL=realtime_db)
        assert sent.returncode == 0, sent.stderr
        assert "Postgres NOTIFY" in sent.stdout and "secret" not in sent.stdout
        assert "private" not in sent.stdout and "public" not in sent.stdout  # NOTIFY channels are neither
        async for note in listener.notifies(timeout=5, stop_after=1):
            assert json.loads(note.payload)["payload"] == {"n": 1}


async def test_an_oversized_notify_names_the_real_limit(realtime_db: str) -> None:
    """Regression: with SUPABASE_PUSH_MAX_PAYLOAD_BYTES=20000 a 9 kB payload was refused as over 7,799 bytes
    with a hint to raise that variable, which cannot help."""
    big = json.dumps({"blob": "x" * 9000})
    sent = await cli("t", "e", "--data", big, DATABASE_URL=realtime_db, SUPABASE_PUSH_MAX_PAYLOAD_BYTES="20000")
    assert sent.returncode == 2, sent.stderr
    assert "over the 7,799-byte limit of the transport" in sent.stderr
    assert "NOTIFY carries under 8,000 bytes" in sent.stderr and "Supabase Realtime" in sent.stderr
    assert "raise SUPABASE_PUSH_MAX_PAYLOAD_BYTES" not in sent.stderr


async def test_broadcast_errors_are_clear_and_exit_codes_distinct(realtime: LocalRealtime) -> None:
    not_json = await cli("t", "e", "--data", "{nope", **supabase(realtime))
    assert not_json.returncode == 2 and "not JSON" in not_json.stderr
    not_object = await cli("t", "e", "--data", "[1, 2]", **supabase(realtime))
    assert not_object.returncode == 2 and "must be a JSON object" in not_object.stderr
    assert '{"value": ...}' in not_object.stderr  # JSON, not a Python dict
    unconfigured = await cli("t", "e", "--data", "{}")
    assert unconfigured.returncode == 2 and "SUPABASE_URL" in unconfigured.stderr

    wrong_key = realtime.service_role_key[:-4] + "AAAA"
    refused = await cli("t", "e", "--data", "{}", "--json", **supabase(realtime, wrong_key))
    assert refused.returncode == 1 and "HTTP 401" in refused.stderr
    assert json.loads(refused.stdout)["ok"] is False
    assert wrong_key not in refused.stdout + refused.stderr

    down = await cli("t", "e", "--data", "{}", "--timeout", "0.5",
                     SUPABASE_URL="http://127.0.0.1:9", SUPABASE_SERVICE_ROLE_KEY=realtime.service_role_key)
    assert down.returncode == 1 and "cannot reach" in down.stderr and "after 3 attempt(s)" in down.stderr
    assert realtime.service_role_key not in down.stdout + down.stderr
