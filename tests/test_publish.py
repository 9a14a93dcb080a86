"""Durable events from services (issue 18, part 1): ``supabase_push.publish`` appends an event to the change
log in the caller's transaction; it is deduplicated by key, ordered, pushed and read by cursor like a row
change, and reaches subscribers, ``tail``, the relay and the forwarder with the same guarantees."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from supabase_push import (
    Broadcaster,
    DuplicateKeyError,
    PayloadError,
    PayloadTooLargeError,
    apublish,
    publish,
    schema,
)
from supabase_push.broadcast import NullBackend, RestPublisher, SqlPublisher
from supabase_push.changelog import read_changes
from supabase_push.cli import app
from supabase_push.config import Settings
from supabase_push.errors import DeliveryError
from supabase_push.events import START, ChangeEvent
from supabase_push.local import LocalRealtime, ServerConfig, tokens
from supabase_push.local.stack import prepare
from supabase_push.relay.policy import Policy
from supabase_push.subscribe import Subscriber
from supabase_push.sync import SyncBroadcaster

from .conftest import DatabaseFactory
from .postgrest import PostgREST
from .relay_helpers import SseStream, data, relay, token
from .sink_servers import HttpSinkServer
from .subscriber_helpers import until
from .test_forward import forwarding, write_config

runner = CliRunner()


def log_of(url: str) -> list[ChangeEvent]:
    with psycopg.connect(url, autocommit=True) as conn:
        return read_changes(conn, START, limit=100_000)


def test_an_event_commits_with_the_callers_rows_or_not_at_all(installed_url: str) -> None:
    with psycopg.connect(installed_url) as conn:  # a transaction, as a service writes its rows
        conn.execute("INSERT INTO trades (symbol, side, quantity, price) VALUES ('GONE', 'buy', 1, 1)")
        publish(conn, "trade-updates", "trade-filled", {"symbol": "GONE"})
        conn.rollback()
        assert log_of(installed_url) == [], "a rolled-back event is never delivered"
        conn.execute("INSERT INTO trades (symbol, side, quantity, price) VALUES ('KEPT', 'buy', 3, 101.25)")
        change_id = publish(conn, "trade-updates", "trade-filled", {"symbol": "KEPT", "quantity": 3, "px": 101.25})
        conn.commit()
    row, event = log_of(installed_url)
    assert row.op == "INSERT" and row.record is not None and row.record["symbol"] == "KEPT" and row.event is None
    assert event.op == "EVENT" and event.event == "trade-filled" and event.id == change_id
    assert event.topic == "trade-updates" and event.table == "" and event.old_record is None
    assert event.payload == event.record == {"symbol": "KEPT", "quantity": 3, "px": 101.25}
    assert event.position.seq == row.position.seq and event.position > row.position, "one transaction, one seq"


async def test_apublish_joins_the_async_callers_transaction(installed_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(installed_url) as conn, conn.transaction():
        await apublish(conn, "position-updates", "book-closed", {"day": "2026-12-02"}, key="close-2026-12-02")
        assert log_of(installed_url) == [], "nothing is visible before the caller commits"
    [event] = log_of(installed_url)
    assert (event.event, event.payload) == ("book-closed", {"day": "2026-12-02"})


def test_a_key_makes_a_retry_one_event_and_another_payload_an_error(installed: psycopg.Connection[Any],
                                                                   installed_url: str) -> None:
    first = publish(installed, "trade-updates", "risk-limit", {"limit": 5000}, key="limit-1")
    assert publish(installed, "trade-updates", "risk-limit", {"limit": 5000}, key="limit-1") == first
    with pytest.raises(DuplicateKeyError, match="key 'limit-1' was published before") as refused:
        publish(installed, "trade-updates", "risk-limit", {"limit": 9999}, key="limit-1")
    assert "nothing was published" in refused.value.message and refused.value.hint
    with pytest.raises(DuplicateKeyError):
        publish(installed, "position-updates", "risk-limit", {"limit": 5000}, key="limit-1")  # another topic
    assert [e.id for e in log_of(installed_url)] == [first]

    # Two services publishing one key at once: the second waits for the first and gets its event.
    with psycopg.connect(installed_url) as holder:
        held = publish(holder, "trade-updates", "halt", {"symbol": "XYZ"}, key="halt-xyz")
        second: list[int] = []

        def race() -> None:
            with psycopg.connect(installed_url, autocommit=True) as other:
                second.append(publish(other, "trade-updates", "halt", {"symbol": "XYZ"}, key="halt-xyz"))

        racer = threading.Thread(target=race)
        racer.start()
        racer.join(0.5)
        assert racer.is_alive(), "the second publish waits for the first transaction"
        holder.commit()
    racer.join(10)
    assert second == [held]
    assert [e.event for e in log_of(installed_url)] == ["risk-limit", "halt"]


@pytest.mark.parametrize(("topic", "event", "payload", "error", "needle"), [
    ("nowhere", "x", {"a": 1}, PayloadError, "unknown topic 'nowhere'"),
    ("trade-updates", "INSERT", {"a": 1}, PayloadError, "'INSERT' is not an event name"),
    ("trade-updates", "bad name", {"a": 1}, PayloadError, "'bad name' is not an event name"),
    ("trade-updates", "x", [1, 2], PayloadError, "payload must be a JSON object"),
    ("trade-updates", "x", {"blob": "x" * 300_000}, PayloadTooLargeError, "over the 262,144 an event may carry"),
])
def test_bad_events_are_refused_clearly_and_nothing_is_written(installed: psycopg.Connection[Any], installed_url: str,
                                                               topic: str, event: str, payload: Any,
                                                               error: type[Exception], needle: str) -> None:
    with pytest.raises(error, match=needle):
        publish(installed, topic, event, payload)
    assert log_of(installed_url) == []


@pytest.mark.parametrize(("payload", "needle"), [
    ("[1, 2]", "payload must be a JSON object, got array"),
    ('{"blob": "' + "x" * 300_000 + '"}', "over the 262144 an event may carry"),
])
def test_the_sql_function_itself_refuses_what_no_client_checked(installed: psycopg.Connection[Any],
                                                               installed_url: str, payload: str, needle: str) -> None:
    with pytest.raises(psycopg.Error, match=needle):
        installed.execute("SELECT supabase_push.publish('trade-updates', 'x', %s::jsonb)", (payload,))
    assert log_of(installed_url) == []


def test_event_topics_are_declared_by_apply_and_reported(installed: psycopg.Connection[Any],
                                                         installed_url: str) -> None:
    with pytest.raises(PayloadError, match="unknown topic 'signals'") as refused:
        publish(installed, "signals", "halt", {})
    assert "apply --event-topic" in str(refused.value.hint)
    result = runner.invoke(app, ["apply", "--db-url", installed_url, "--event-topic", "signals", "-e", "alerts"])
    assert result.exit_code == 0, result.output
    assert "event topics: alerts, signals" in result.output
    publish(installed, "signals", "halt", {"all": True})
    again = schema.apply(installed)  # an apply without the option keeps them
    assert again.event_topics == ["alerts", "signals"] and not again.changed
    assert schema.status(installed).event_topics == ["alerts", "signals"]
    assert schema.verify(installed).ok
    schema.apply(installed, replace=True, event_topics=["alerts"])
    with pytest.raises(PayloadError, match="unknown topic 'signals'"):
        publish(installed, "signals", "halt", {})
    status = runner.invoke(app, ["status", "--db-url", installed_url, "--json"])
    assert json.loads(status.output)["event_topics"] == ["alerts"]


async def test_subscribers_tail_and_the_forwarder_get_events_like_changes(installed_url: str, tmp_path: Path) -> None:
    subscriber = Subscriber.from_settings(Settings(database_url=installed_url), topics=["trade-updates"],
                                          transport="listen", start="now")
    hook = HttpSinkServer()
    config = write_config(tmp_path, f'[sinks.hook]\ntype = "webhook"\nurl = "{hook.url}"\n',
                          '[[rules]]\nname = "halts"\nevent = "halt"\nwhen = "symbol == \'XYZ\'"\n'
                          'message = "{event}: {symbol} by {who}"\n')
    async with subscriber, forwarding(installed_url, config) as forwarder:
        await until(subscriber, "push:listen")
        async with Broadcaster.from_settings(Settings(database_url=installed_url)) as broadcaster:
            await broadcaster.publish("trade-updates", "halt", {"symbol": "XYZ", "who": "risk"}, key="h1")
            await broadcaster.publish("trade-updates", "halt", {"symbol": "XYZ", "who": "risk"}, key="h1")  # retry
            await broadcaster.publish("trade-updates", "halt", {"symbol": "ABC", "who": "risk"})
            assert broadcaster.stats.published == 3
        got = [await asyncio.wait_for(anext(subscriber), 10) for _ in range(2)]
        [alert] = await asyncio.to_thread(hook.wait_for, 1)
        assert forwarder.stats()["alerts"] == 1, "the rule takes only the halt of XYZ"
    hook.close()
    assert alert.body["message"] == "halt: XYZ by risk"
    assert [(e.op, e.event, e.source) for e in got] == [("EVENT", "halt", "listen")] * 2
    assert [e.payload["symbol"] for e in got if e.payload] == ["XYZ", "ABC"]
    proc = subprocess.run([sys.executable, "-m", "supabase_push", "tail", "--db-url", installed_url, "--json",
                           "--from", "0:0", "--count", "2", "--timeout", "20"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(e["op"], e["event"], e["record"]["symbol"]) for e in lines] == [("EVENT", "halt", "XYZ"),
                                                                            ("EVENT", "halt", "ABC")]


async def test_the_relay_sends_an_event_to_its_owner_or_to_everyone(installed_url: str) -> None:
    async with relay(installed_url, policy=Policy(topics=["trade-updates"])) as server, \
            SseStream(server.url, token("alice")) as alice, SseStream(server.url, token("bob")) as bob:
        await asyncio.sleep(0.5)
        with psycopg.connect(installed_url, autocommit=True) as conn:
            publish(conn, "trade-updates", "margin-call", {"user_id": "alice", "amount": 100})
            publish(conn, "trade-updates", "market-halt", {"venue": "XNAS"})
        alice_got = [data(e) for e in await alice.take(2)]
        bob_got = [data(e) for e in await bob.take(1)]
    assert [(e["op"], e["event"]) for e in alice_got] == [("EVENT", "margin-call"), ("EVENT", "market-halt")]
    assert [(e["event"], e["record"]) for e in bob_got] == [("market-halt", {"venue": "XNAS"})]


async def test_over_postgrest_and_realtime_as_on_hosted_supabase(make_db: DatabaseFactory) -> None:
    """No DATABASE_URL: publish through PostgREST RPC with the service role; a subscriber gets the event by a
    Realtime push (the event's own name as the broadcast event) and reads by cursor through PostgREST."""
    url = make_db("empty")
    with psycopg.connect(url, autocommit=True) as conn:
        prepare(conn)
    service_key = tokens.mint("service_role", tokens.DEV_SECRET)
    with PostgREST(url, tokens.DEV_SECRET) as api:
        async with LocalRealtime(url, ServerConfig(port=0)) as server:
            subscriber = Subscriber.from_settings(
                Settings(supabase_url=server.url, service_role_key=server.service_role_key), rest_url=api.url,
                topics=["position-updates"], start="now")
            async with subscriber:
                await until(subscriber, "push:realtime")
                publisher = RestPublisher(api.url, service_key)
                async with Broadcaster(NullBackend("publish only"), publisher=publisher) as broadcaster:
                    first = await broadcaster.publish("position-updates", "rebalance", {"n": 1}, key="r1")
                    assert await broadcaster.publish("position-updates", "rebalance", {"n": 1}, key="r1") == first
                    with pytest.raises(DuplicateKeyError, match="published before"):
                        await broadcaster.publish("position-updates", "rebalance", {"n": 2}, key="r1")
                    with pytest.raises(PayloadError, match="unknown topic"):
                        await broadcaster.publish("nowhere", "rebalance", {"n": 2})
                event = await asyncio.wait_for(anext(subscriber), 10)
            anon = RestPublisher(api.url, tokens.mint("anon", tokens.DEV_SECRET))
            with pytest.raises(DeliveryError, match="refused the event") as refused:
                await anon.publish("position-updates", "rebalance", '{"n": 3}', None)
            await anon.close()
    assert "service role" in str(refused.value.hint)
    assert (event.op, event.event, event.payload, event.source) == ("EVENT", "rebalance", {"n": 1}, "realtime")
    assert event.id == first
    assert [e.id for e in log_of(url)] == [first]


def test_sync_broadcaster_publishes_and_a_dropped_connection_is_retried_with_a_key(installed_url: str) -> None:
    with SyncBroadcaster(Broadcaster.from_settings(Settings(database_url=installed_url))) as broadcaster:
        first = broadcaster.publish("trade-updates", "eod", {"day": 1}, key="eod-1")
        publisher = broadcaster.broadcaster.publisher
        assert isinstance(publisher, SqlPublisher)
        with psycopg.connect(installed_url, autocommit=True) as admin:  # the publisher's connection goes
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        assert broadcaster.publish("trade-updates", "eod", {"day": 1}, key="eod-1") == first
        assert broadcaster.stats.retries >= 1
    assert [e.id for e in log_of(installed_url)] == [first]


def test_cli_publish(installed_url: str) -> None:
    env = {"DATABASE_URL": installed_url}
    args = ["publish", "trade-updates", "halt", "--data", '{"symbol": "XYZ"}', "--key", "cli-1", "--json"]
    first = runner.invoke(app, args, env=env)
    assert first.exit_code == 0, first.output
    answer = json.loads(first.output)
    assert answer["ok"] and answer["event"] == "halt" and answer["key"] == "cli-1" and answer["via"].startswith("SQL")
    again = runner.invoke(app, args, env=env)
    assert json.loads(again.output)["id"] == answer["id"]
    human = runner.invoke(app, ["publish", "trade-updates", "halt", "-d", '{"symbol": "ABC"}'], env=env)
    assert human.exit_code == 0 and "published trade-updates/halt as change" in human.output
    for bad, needle, code in [(["nowhere", "halt", "-d", "{}"], "unknown topic 'nowhere'", 2),
                              (["trade-updates", "halt", "-d", "[1]"], "payload must be a JSON object", 2),
                              (["trade-updates", "halt", "-d", "{"], "the payload is not JSON", 2)]:
        result = runner.invoke(app, ["publish", *bad], env=env)
        assert result.exit_code == code and needle in result.output, result.output
    nothing = runner.invoke(app, ["publish", "trade-updates", "halt", "-d", "{}"], env={"DATABASE_URL": ""})
    assert nothing.exit_code == 2 and "nothing to publish events through" in nothing.output
    assert len(log_of(installed_url)) == 2
