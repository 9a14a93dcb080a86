"""The new-style API keys (``sb_publishable_...``, ``sb_secret_...``): printed and accepted by the local
server for anon and service_role, and used by the library as hosted Supabase wants (in ``apikey``, never
as a Bearer JWT)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from uuid import uuid4

import httpx
import psycopg
import pytest
from realtime import AsyncRealtimeClient

from supabase_push.broadcast import Broadcaster, RestBackend, WebsocketBackend
from supabase_push.local import LocalRealtime, tokens
from supabase_push.subscribe import Subscriber

from .realtime_helpers import JsAgent, options, unique
from .subscriber_helpers import logged, settings, until
from .test_broadcast import listening
from .test_local_python import subscribe

KEY_SHAPE = re.compile(r"^sb_(publishable|secret)_[A-Za-z0-9_-]{22}_[A-Za-z0-9_-]{8}$")


def test_keys_are_shaped_like_supabase_and_stable_per_secret() -> None:
    keys = tokens.api_keys(tokens.DEV_SECRET)
    assert all(KEY_SHAPE.match(key) for key in keys.values()), keys
    assert keys == tokens.api_keys(tokens.DEV_SECRET) != tokens.api_keys("another-secret-of-at-least-32-chars!!")


def test_the_server_maps_each_key_to_its_role_and_refuses_others(realtime: LocalRealtime) -> None:
    assert realtime.verify(realtime.publishable_key)["role"] == "anon"
    assert realtime.verify(realtime.secret_key)["role"] == "service_role"
    with pytest.raises(tokens.TokenError, match="Invalid API key"):
        realtime.verify("sb_secret_" + "x" * 31)


async def test_a_wrong_key_is_refused_at_the_handshake(realtime: LocalRealtime) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{realtime.url}/realtime/v1/websocket?apikey=sb_secret_nope&vsn=1.0.0")
    assert response.status_code == 401 and "Invalid API key" in response.text


async def test_the_rest_endpoint_takes_a_key_in_apikey_not_as_a_bearer_token(realtime: LocalRealtime) -> None:
    body = {"messages": [{"topic": unique("k"), "event": "e", "payload": {}, "private": False}]}
    url = f"{realtime.url}/realtime/v1/api/broadcast"
    async with httpx.AsyncClient() as http:
        in_apikey = await http.post(url, json=body, headers={"apikey": realtime.secret_key})
        repeated = await http.post(url, json=body, headers={"apikey": realtime.publishable_key,
                                                            "Authorization": f"Bearer {realtime.publishable_key}"})
        as_bearer = await http.post(url, json=body, headers={"apikey": realtime.anon_key,
                                                             "Authorization": f"Bearer {realtime.secret_key}"})
    assert in_apikey.status_code == 202 and repeated.status_code == 202
    assert as_bearer.status_code == 401


@pytest.mark.parametrize("backend", ["rest", "websocket"])
async def test_broadcasts_with_the_secret_key_reach_a_private_channel(realtime: LocalRealtime, backend: str) -> None:
    topic, marker = unique("secret"), uuid4().hex
    parts = RestBackend(realtime.url, realtime.secret_key) if backend == "rest" else \
        WebsocketBackend(realtime.url, realtime.secret_key)
    async with listening(realtime, topic, private=True) as inbox:
        async with Broadcaster(parts) as broadcaster:
            await broadcaster.broadcast(topic, "signal", {"marker": marker}, private=True)
        await inbox.wait_for(lambda m: m["payload"].get("marker") == marker)


async def test_the_publishable_key_joins_public_channels_and_not_private_ones(realtime: LocalRealtime) -> None:
    client = AsyncRealtimeClient(realtime.realtime_url, realtime.publishable_key)
    try:
        public = client.channel(unique("pub"), options())
        await subscribe(public)
        private = client.channel(unique("priv"), options(private=True))
        states: list[str] = []
        await private.subscribe(lambda state, _error: states.append(state.value))
        assert not private.is_joined and "CHANNEL_ERROR" in states
    finally:
        await client.close()


async def test_a_subscriber_with_the_secret_key_gets_trigger_pushes(realtime: LocalRealtime, realtime_db: str) -> None:
    subscriber = Subscriber.from_settings(
        settings(supabase_url=realtime.url, service_role_key=realtime.secret_key, database_url=realtime_db),
        topics=["trade-updates"], start=(logged(realtime_db, ["trade-updates"]) or ["0:0"])[-1])
    async with subscriber:
        await until(subscriber, "push:realtime")  # the engine has taken the transport's up (and read once)
        async with await psycopg.AsyncConnection.connect(realtime_db, autocommit=True) as db:
            await db.execute("INSERT INTO trades (symbol, side, quantity, price) VALUES ('SBKEY', 'buy', 1, 2)")
        async with asyncio.timeout(20):
            async for event in subscriber:
                if event.record and event.record.get("symbol") == "SBKEY":
                    break
    assert event.source == "realtime" and subscriber.stats.push_failures == 0, subscriber.stats


async def test_supabase_js_with_the_publishable_key(realtime: LocalRealtime) -> None:
    agent = await JsAgent.start(realtime.url, realtime.publishable_key, "2.0.0")
    try:
        topic = unique("jskey")
        await agent.send(cmd="subscribe", name=topic)
        await agent.subscribed(topic)
        async with Broadcaster(RestBackend(realtime.url, realtime.secret_key)) as broadcaster:
            await broadcaster.broadcast(topic, "hello", {"from": "py"}, private=False)
        await agent.wait_for(lambda e: e["type"] == "broadcast" and e["payload"]["payload"] == {"from": "py"})
    finally:
        await agent.close()


def test_serve_env_prints_lines_a_shell_can_source() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "supabase_push", "serve", "--port", "0", "--env"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    try:
        lines = [proc.stdout.readline() for _ in range(6)]
        values = dict(line.removeprefix("export ").strip().split("=", 1) for line in lines)
        # the throwaway database has a new project's grants: REST answers for the anon role
        rest = httpx.get(f"{values['SUPABASE_URL']}/rest/v1/trades?select=id",
                         headers={"apikey": values["SUPABASE_PUBLISHABLE_KEY"]}, timeout=10)
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    assert rest.status_code == 200 and rest.json() == [], rest.text
    script = "".join(lines) + 'echo "$SUPABASE_URL|$SUPABASE_PUBLISHABLE_KEY|$SUPABASE_SECRET_KEY|$DATABASE_URL"\n'
    url, publishable, secret, database = subprocess.run(["sh", "-c", script], capture_output=True, text=True,
                                                        check=True).stdout.strip().split("|")
    assert url.startswith("http://127.0.0.1:") and database.startswith("postgresql://")
    assert KEY_SHAPE.match(publishable) and KEY_SHAPE.match(secret)
    assert [line.split("=")[0] for line in lines] == [
        "export SUPABASE_URL", "export SUPABASE_ANON_KEY", "export SUPABASE_SERVICE_ROLE_KEY",
        "export SUPABASE_PUBLISHABLE_KEY", "export SUPABASE_SECRET_KEY", "export DATABASE_URL"]
