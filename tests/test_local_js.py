"""The local Realtime server, proven by the official JS client (npm @supabase/supabase-js,
node with ``ws``), under protocol vsn 2.0.0 (its default: arrays and binary broadcast frames)
and 1.0.0, and talking to the official Python client on the same topics."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from realtime import AsyncRealtimeClient

from supabase_push.local import LocalRealtime
from tests.test_local_python import subscribe

from .realtime_helpers import Inbox, JsAgent, options, unique


@pytest.fixture(params=["2.0.0", "1.0.0"])
async def js(request: pytest.FixtureRequest, realtime: LocalRealtime) -> AsyncIterator[JsAgent]:
    agent = await JsAgent.start(realtime.url, realtime.service_role_key, request.param)
    yield agent
    await agent.close()


@pytest.fixture
async def py(realtime: LocalRealtime) -> AsyncIterator[AsyncRealtimeClient]:
    client = AsyncRealtimeClient(realtime.realtime_url, realtime.anon_key)
    yield client
    await client.close()


async def test_js_receives_postgres_changes_with_a_filter(js: JsAgent, db: psycopg.Connection[Any]) -> None:
    symbol = unique("JS")
    name = unique("orders")
    await js.send(cmd="subscribe", name=name,
                  changes=[{"event": "*", "schema": "public", "table": "orders", "filter": f"symbol=eq.{symbol}"}])
    await js.subscribed(name)
    await js.wait_for(lambda e: e["type"] == "system" and e["payload"]["message"] == "Subscribed to PostgreSQL")
    base = uuid.uuid4().int % 10**9
    db.execute("INSERT INTO orders (id, symbol, qty, status, tags) VALUES (%s, %s, 2.5, 'new', '{x,y}'),"
               " (%s, 'OTHER', 1, 'new', NULL)", (base, symbol, base + 1))
    db.execute("UPDATE orders SET status = 'filled' WHERE id = %s", (base,))
    db.execute("DELETE FROM orders WHERE id IN (%s, %s)", (base, base + 1))
    got = [e["payload"] for e in await js.wait_for(lambda e: e["type"] == "postgres_changes", count=3)]
    assert [p["eventType"] for p in got] == ["INSERT", "UPDATE", "DELETE"]
    assert got[0]["new"]["qty"] == 2.5 and got[0]["new"]["tags"] == ["x", "y"] and got[0]["old"] == {}
    assert got[1]["new"]["status"] == "filled" and got[1]["old"]["status"] == "new"
    assert got[2]["old"]["symbol"] == symbol and got[2]["new"] == {}
    assert all(p["table"] == "orders" and p["schema"] == "public" and p["commit_timestamp"] for p in got)


async def test_js_receives_database_broadcast_from_the_trigger_sql(js: JsAgent, db: psycopg.Connection[Any]) -> None:
    await js.send(cmd="subscribe", name="trade-updates", config={"private": True})
    await js.subscribed("trade-updates")
    order = unique("ord")
    db.execute("INSERT INTO trades (symbol, side, quantity, price, order_id) VALUES ('MSFT', 'buy', 3, 410.5, %s)",
               (order,))
    [event] = await js.wait_for(
        lambda e: e["type"] == "broadcast" and e["payload"]["payload"]["record"]["order_id"] == order)
    message = event["payload"]
    assert message["event"] == "INSERT" and message["type"] == "broadcast"
    assert message["payload"]["topic"] == "trade-updates" and message["payload"]["record"]["price"] == 410.5
    assert message["meta"]["id"]


async def test_js_and_python_exchange_broadcasts_and_presence(js: JsAgent, py: AsyncRealtimeClient) -> None:
    topic = unique("desk")
    await js.send(cmd="subscribe", name=topic, presence=True,
                  config={"broadcast": {"ack": True}, "presence": {"key": "js"}})
    await js.subscribed(topic)
    py_inbox, py_sync = Inbox(), Inbox()
    channel = py.channel(topic, options(presence={"key": "py", "enabled": True}))
    channel.on_broadcast("*", py_inbox)
    channel.on_presence_sync(lambda: py_sync(dict(channel.presence_state())))
    await subscribe(channel)

    await js.send(cmd="send", name=topic, event="quote", payload={"bid": 1.25, "from": "js"})
    [sent] = await js.wait_for(lambda e: e["type"] == "sent")
    assert sent["result"] == "ok"  # ack: true, so the server replied
    await py_inbox.wait_for(lambda p: p["event"] == "quote" and p["payload"] == {"bid": 1.25, "from": "js"})

    await channel.send_broadcast("quote", {"bid": 1.5, "from": "py"})
    [received] = await js.wait_for(lambda e: e["type"] == "broadcast" and e["payload"]["payload"]["from"] == "py")
    assert received["payload"]["event"] == "quote" and received["payload"]["payload"]["bid"] == 1.5

    await js.send(cmd="track", name=topic, payload={"status": "trading"})
    await channel.track({"status": "watching"})
    await py_sync.wait_for(lambda s: {"js", "py"} <= s.keys())
    [seen] = await js.wait_for(lambda e: e["type"] == "presence" and {"js", "py"} <= e["state"].keys())
    assert seen["state"]["py"][0]["status"] == "watching"
    await channel.track({"status": "away"})  # an update (phx_ref_prev): supabase-js keeps one meta, the new one
    await js.wait_for(lambda e: e["type"] == "presence" and [m["status"] for m in e["state"].get("py", [])] == ["away"])


async def test_js_receives_rest_broadcast_and_sends_with_http_send(js: JsAgent, py: AsyncRealtimeClient) -> None:
    topic = unique("rest")
    await js.send(cmd="subscribe", name=topic)
    await js.subscribed(topic)
    py_inbox = Inbox()
    channel = py.channel(topic)
    channel.on_broadcast("*", py_inbox)
    await subscribe(channel)
    await channel.http_send("from-python", {"n": 1})
    await js.wait_for(lambda e: e["type"] == "broadcast" and e["payload"]["event"] == "from-python")
    await js.send(cmd="httpSend", name=topic, event="from-js", payload={"n": 2})
    [sent] = await js.wait_for(lambda e: e["type"] == "httpSent")
    assert sent.get("error") is None and sent["result"]["success"] is True
    await py_inbox.wait_for(lambda p: p["event"] == "from-js" and p["payload"] == {"n": 2})
