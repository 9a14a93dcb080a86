"""No one gets in with a bad token, no one reads what they may not, and no key leaks into output."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import subprocess
import sys
import time
from typing import Any

import httpx
import psycopg
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from supabase_push import schema
from supabase_push.errors import MissingTableError, SupabasePushError
from supabase_push.events import START
from supabase_push.local import LocalRealtime, tokens
from supabase_push.subscribe import RestReader, Subscriber

from .postgrest import PostgREST
from .subscriber_helpers import TOPICS, settings


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def forged(claims: dict[str, Any], alg: str = "none") -> str:
    return f"{_b64({'alg': alg, 'typ': 'JWT'})}.{_b64(claims)}."


NOW = time.time()
BAD_TOKENS = {
    "expired": tokens.mint("service_role", tokens.DEV_SECRET, ttl=-60),
    # made at collection: valid from a day on, whatever the suite's length (it took over 600 s once)
    "not yet valid": tokens.sign({"role": "service_role", "exp": NOW + 2 * 86400, "nbf": NOW + 86400},
                                 tokens.DEV_SECRET),
    "wrong signature": tokens.mint("service_role", "another-secret-of-at-least-thirty-two-chars"),
    "alg none": forged({"role": "service_role", "exp": NOW + 3600}),
    "alg none, signed as HS256 would be": forged({"role": "service_role", "exp": NOW + 3600}, alg="None"),
    "no role": tokens.sign({"exp": NOW + 3600}, tokens.DEV_SECRET),
    "no exp": tokens.sign({"role": "service_role"}, tokens.DEV_SECRET),
    "not a JWT": "service_role",
}


@pytest.mark.parametrize("name", list(BAD_TOKENS))
def test_bad_tokens_are_refused(name: str) -> None:
    with pytest.raises(tokens.TokenError):
        tokens.verify(BAD_TOKENS[name], tokens.DEV_SECRET)


@pytest.mark.parametrize("name", list(BAD_TOKENS))
async def test_bad_tokens_cannot_open_a_socket_or_broadcast(realtime: LocalRealtime, name: str) -> None:
    token = BAD_TOKENS[name]
    with pytest.raises(InvalidStatus):
        async with connect(f"{realtime.realtime_url}/websocket?apikey={token}&vsn=1.0.0"):
            pass
    async with httpx.AsyncClient(base_url=realtime.url) as http:
        response = await http.post("/realtime/v1/api/broadcast", headers={"apikey": token},
                                   json={"messages": [{"topic": "t", "event": "e", "payload": {}}]})
    assert response.status_code == 401, response.text


async def test_the_change_log_is_closed_to_users_through_postgrest(realtime_db: str) -> None:
    """anon and authenticated (a signed-in user) may not read the log: it does not apply table RLS."""
    with PostgREST(realtime_db, tokens.DEV_SECRET) as api:
        for role in ("anon", "authenticated"):
            reader = RestReader(api.url, tokens.mint(role, tokens.DEV_SECRET, sub="user-1"))
            try:
                with pytest.raises(SupabasePushError, match="refused the read"):
                    await reader.read(START, 10, TOPICS, "poll")
            finally:
                await reader.close()


@pytest.mark.parametrize("table", [
    "trades; DROP TABLE positions; --", 'trades"; DROP TABLE positions; --', "positions' OR '1'='1",
    "pg_catalog.pg_authid", "public.trades\x00", "a.b.c",
])
def test_table_names_are_identifiers_never_sql(installed_url: str, table: str) -> None:
    with psycopg.connect(installed_url, autocommit=True) as conn:
        before = conn.execute("SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace").fetchone()
        with pytest.raises((MissingTableError, SupabasePushError, ValueError)):
            schema.apply(conn, [schema.Route(table, "x-updates")])
        after = conn.execute("SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace").fetchone()
        assert before == after
        assert schema.verify(conn).ok  # the installation is as it was


@pytest.mark.parametrize("topic", ["x'; DROP TABLE trades; --", 'x"; NOTIFY pwned; --', "a" * 300])
def test_topic_names_are_values_never_sql(installed_url: str, topic: str) -> None:
    with psycopg.connect(installed_url, autocommit=True) as conn:
        with contextlib.suppress(SupabasePushError):
            schema.apply(conn, [schema.Route("trades", topic)])
        assert conn.execute("SELECT to_regclass('public.trades') IS NOT NULL").fetchone() == (True,)


def test_no_command_prints_the_service_role_key(realtime: LocalRealtime, installed_url: str) -> None:
    """Failing and succeeding commands, verbose, with --json: the key never shows."""
    key = realtime.service_role_key
    env = {**os.environ, "SUPABASE_URL": "http://127.0.0.1:1", "SUPABASE_SERVICE_ROLE_KEY": key,
           "DATABASE_URL": installed_url, "SUPABASE_ANON_KEY": realtime.anon_key}
    good = {**env, "SUPABASE_URL": realtime.url}
    runs = [
        (env, ["-v", "tail", "--json", "--count", "1", "--timeout", "4"]),
        (env, ["-v", "doctor", "--json", "--timeout", "2"]),
        (good, ["-v", "doctor"]),
        (env, ["-v", "broadcast", "trade-updates", "x", "--data", "{}", "--json", "--timeout", "1"]),
        (good, ["-v", "broadcast", "trade-updates", "x", "--data", "{}", "--json"]),
        ({**env, "SUPABASE_SERVICE_ROLE_KEY": key + "x"}, ["-v", "status", "--json"]),
    ]
    for environment, args in runs:
        done = subprocess.run([sys.executable, "-m", "supabase_push", *args], env=environment,
                              capture_output=True, text=True, timeout=60, check=False)
        output = done.stdout + done.stderr
        assert output.strip(), args
        assert key not in output and realtime.anon_key not in output, args


async def test_library_logs_never_carry_a_key(realtime: LocalRealtime, installed_url: str,
                                              caplog: pytest.LogCaptureFixture) -> None:
    key = realtime.service_role_key
    subscriber = Subscriber.from_settings(
        settings(supabase_url="http://127.0.0.1:1", service_role_key=key, database_url=installed_url),
        topics=TOPICS, poll_interval=0.1)
    with caplog.at_level(logging.DEBUG):
        async with subscriber:
            await subscriber.wait_ready()
            time_left = 2.0
            while subscriber.stats.push_failures < 2 and time_left > 0:
                await asyncio.sleep(0.1)
                time_left -= 0.1
    assert subscriber.stats.push_failures >= 1
    assert key not in caplog.text


@pytest.mark.parametrize("route", ['trades; DROP TABLE positions; --=x', 'x"; DROP TABLE positions; --=y',
                                   "trades=x'; DROP TABLE positions; --"])
def test_the_cli_takes_injections_as_names(installed_url: str, route: str) -> None:
    from typer.testing import CliRunner

    from supabase_push.cli import app

    result = CliRunner().invoke(app, ["apply", "--db-url", installed_url, "-t", route, "--json"])
    with psycopg.connect(installed_url) as conn:
        assert conn.execute("SELECT to_regclass('public.positions') IS NOT NULL").fetchone() == (True,)
    if result.exit_code != 0:
        assert result.exit_code in (1, 2) and "Traceback" not in result.output
        assert json.loads(result.stdout.splitlines()[0])["error"]


async def test_a_token_whose_role_is_none_gets_none_of_the_server_s_rights(realtime_db: str) -> None:
    """``none`` is what ``set_config('role', ...)`` reads as the session's own role (the local server's, a
    superuser here): a signed token carrying it may write and read no private topic, as a role that does not
    exist may not."""
    from supabase_push.local.database import Database

    db = Database(realtime_db, install=False)
    await db.open()
    try:
        assert await db.can_write({"role": "service_role"}, "room-1")
        assert await db.can_read({"role": "service_role"}, "room-1", ["broadcast"]) == {"broadcast": True}
        for role in ("none", "no such role"):
            assert not await db.can_write({"role": role}, "room-1")
            assert await db.can_read({"role": role}, "room-1", ["broadcast", "presence"]) \
                == {"broadcast": False, "presence": False}
    finally:
        await db.close()
