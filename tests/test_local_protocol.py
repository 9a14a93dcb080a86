"""The local server frame by frame, and Supabase's answers to bad input.

A raw websocket client shows exactly what goes over the wire; every test ends by checking
that the socket (or another one) is still served.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from supabase_push.local import LocalRealtime, ServerConfig, mint
from supabase_push.local.tokens import sign
from tests.realtime_helpers import unique


class Raw:
    """A websocket speaking vsn 1.0.0 (objects) or 2.0.0 (arrays) by hand."""

    def __init__(self, ws: ClientConnection, vsn: str) -> None:
        self.ws, self.vsn, self._ref = ws, vsn, 0

    async def send(self, topic: str, event: str, payload: Any, join_ref: str | None = None) -> str:
        self._ref += 1
        ref = str(self._ref)
        if self.vsn == "2.0.0":
            await self.ws.send(json.dumps([join_ref, ref, topic, event, payload]))
        else:
            await self.ws.send(json.dumps({"topic": topic, "event": event, "payload": payload, "ref": ref,
                                           "join_ref": join_ref}))
        return ref

    async def recv(self, timeout: float = 5) -> dict[str, Any]:
        frame = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        if self.vsn == "2.0.0":
            join_ref, ref, topic, event, payload = frame
            return {"join_ref": join_ref, "ref": ref, "topic": topic, "event": event, "payload": payload}
        return frame  # type: ignore[no-any-return]

    async def expect(self, event: str, timeout: float = 5) -> dict[str, Any]:
        message = await self.recv(timeout)
        assert message["event"] == event, message
        return message

    async def join(self, topic: str, config: dict[str, Any] | None = None, **payload: Any) -> dict[str, Any]:
        ref = await self.send(topic, "phx_join", {"config": config or {}, **payload}, join_ref=str(self._ref + 1))
        message = await self.expect("phx_reply")
        assert message["ref"] == ref
        return message

    async def alive(self) -> None:
        ref = await self.send("phoenix", "heartbeat", {})
        message = await self.expect("phx_reply")
        assert message["ref"] == ref and message["payload"] == {"status": "ok", "response": {}}


def ws_url(server: LocalRealtime, key: str | None, vsn: str | None = "1.0.0", path: str = "/realtime/v1") -> str:
    query = "&".join(part for part in (f"apikey={key}" if key else "", f"vsn={vsn}" if vsn else "") if part)
    return f"ws://127.0.0.1:{server.port}{path}/websocket?{query}"


@pytest.fixture(params=["1.0.0", "2.0.0"])
async def raw(request: pytest.FixtureRequest, realtime: LocalRealtime) -> AsyncIterator[Raw]:
    async with connect(ws_url(realtime, realtime.anon_key, request.param)) as ws:
        yield Raw(ws, request.param)


async def test_join_reply_echoes_bindings_in_order_with_stable_integer_ids(raw: Raw) -> None:
    bindings = [{"event": "INSERT", "schema": "public", "table": "orders", "filter": "qty=gt.1"},
                {"event": "*", "schema": "public", "table": "positions"}]
    topic = "realtime:" + unique("t")
    reply = await raw.join(topic, {"postgres_changes": bindings})
    assert reply["payload"]["status"] == "ok"
    echoed = reply["payload"]["response"]["postgres_changes"]
    assert [{k: v for k, v in b.items() if k != "id"} for b in echoed] == bindings
    assert all(isinstance(b["id"], int) for b in echoed)
    system = await raw.expect("system")
    assert system["payload"] == {"extension": "postgres_changes", "status": "ok",
                                 "message": "Subscribed to PostgreSQL", "channel": topic[9:]}
    assert system["ref"] is None
    if raw.vsn == "2.0.0":
        assert reply["join_ref"] == reply["ref"] and system["join_ref"] == reply["join_ref"]
    else:
        assert "join_ref" not in reply and "join_ref" not in system  # vsn 1 never sends it
    second = await raw.join("realtime:" + unique("t"), {"postgres_changes": bindings})
    assert [b["id"] for b in second["payload"]["response"]["postgres_changes"]] == [b["id"] for b in echoed]


async def test_leave_replies_then_closes_and_duplicate_join_replaces(raw: Raw) -> None:
    topic = "realtime:" + unique("t")
    first = await raw.join(topic)
    second_ref = await raw.send(topic, "phx_join", {"config": {}}, join_ref=str(raw._ref + 1))
    replaced = await raw.expect("phx_close")  # a duplicate join closes the old channel first
    assert replaced["ref"] == first["ref"]
    reply = await raw.expect("phx_reply")
    assert reply["ref"] == second_ref and reply["payload"]["status"] == "ok"
    leave_ref = await raw.send(topic, "phx_leave", {}, join_ref=second_ref)
    reply = await raw.expect("phx_reply")
    assert reply["ref"] == leave_ref and reply["payload"]["status"] == "ok"
    close = await raw.expect("phx_close")
    assert close["ref"] == second_ref and close["payload"] == {}
    ref = await raw.send(topic, "broadcast", {"type": "broadcast", "event": "x", "payload": {}})
    reply = await raw.expect("phx_reply")
    assert reply["ref"] == ref and reply["payload"] == {"status": "error", "response": {"reason": "unmatched topic"}}


async def test_malformed_frames_are_dropped_and_the_socket_keeps_serving(raw: Raw) -> None:
    await raw.ws.send("{not json")
    await raw.ws.send(json.dumps({"only": "garbage"}))
    await raw.ws.send(json.dumps([1, 2, 3]))
    await raw.ws.send(b"\x03\x05")  # a truncated binary broadcast
    await raw.ws.send(b"\x09whatever")  # a binary kind clients may not send
    topic = "realtime:" + unique("t")
    await raw.join(topic)
    await raw.send(topic, "no_such_event", {"x": 1}, join_ref="1")  # logged, no reply (as Realtime)
    await raw.alive()


async def test_unmatched_topic_gets_an_error_reply(raw: Raw) -> None:
    ref = await raw.send("realtime:never-joined", "broadcast", {"type": "broadcast", "event": "e", "payload": {}})
    reply = await raw.expect("phx_reply")
    assert reply["ref"] == ref and reply["payload"] == {"status": "error", "response": {"reason": "unmatched topic"}}
    reply = await raw.join("realtime:")
    assert reply["payload"]["status"] == "error"
    assert reply["payload"]["response"]["reason"].startswith("TopicNameRequired")
    await raw.alive()


async def test_handshake_refusals(realtime: LocalRealtime) -> None:
    secret = realtime.config.jwt_secret
    cases = {
        "no key": (None, "1.0.0", 401),
        "malformed": ("not-a-jwt", "1.0.0", 401),
        "bad signature": (mint("anon", "another-secret-that-is-long-enough-0000"), "1.0.0", 401),
        "no role": (sign({"exp": int(time.time()) + 60}, secret), "1.0.0", 401),
        "expired": (mint("anon", secret, ttl=-5), "1.0.0", 401),
        "wrong vsn": (realtime.anon_key, "3.0.0", 403),
    }
    for name, (key, vsn, status) in cases.items():
        with pytest.raises(InvalidStatus) as refused:
            async with connect(ws_url(realtime, key, vsn)):
                pass
        response = refused.value.response
        assert response.status_code == status, name
        assert json.loads(response.body)["error"], name
    # the header is accepted too, and a missing vsn means 1.0.0
    async with connect(ws_url(realtime, None, None), additional_headers={"apikey": realtime.anon_key}) as ws:
        await Raw(ws, "1.0.0").alive()
    async with connect(ws_url(realtime, realtime.anon_key, path="/socket")) as ws:
        await Raw(ws, "1.0.0").alive()


async def test_oversized_frame_closes_that_socket_only(realtime: LocalRealtime) -> None:
    async with connect(ws_url(realtime, realtime.anon_key)) as bystander:
        ws = await connect(ws_url(realtime, realtime.anon_key), max_size=None)
        with pytest.raises(ConnectionClosed) as closed:
            await ws.send("x" * (realtime.config.max_frame_bytes + 1))
            await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009  # message too big
        await Raw(bystander, "1.0.0").alive()


async def test_bad_or_expired_access_token_in_join_and_refresh(realtime: LocalRealtime) -> None:
    secret = realtime.config.jwt_secret
    async with connect(ws_url(realtime, realtime.anon_key)) as ws:
        raw = Raw(ws, "1.0.0")
        reply = await raw.join("realtime:" + unique("t"), access_token=mint("anon", secret, ttl=-10))
        assert reply["payload"]["status"] == "error"
        assert reply["payload"]["response"]["reason"].startswith("InvalidJWTToken: Token has expired")
        reply = await raw.join("realtime:" + unique("t"), access_token="garbage")
        assert reply["payload"]["response"]["reason"].startswith("MalformedJWT")

        # A token that expires while joined: a system error, then phx_close.
        topic = "realtime:" + unique("t")
        await raw.join(topic, access_token=mint("anon", secret, ttl=1))
        system = await raw.expect("system", timeout=5)
        assert system["payload"]["status"] == "error" and "expired" in system["payload"]["message"]
        await raw.expect("phx_close")

        # A refresh with a good token gets no reply; a bad one closes the channel.
        topic = "realtime:" + unique("t")
        joined = await raw.join(topic)
        join_ref = joined["ref"]
        await raw.send(topic, "access_token", {"access_token": mint("anon", secret, sub="u1")}, join_ref=join_ref)
        await raw.alive()  # the next frame is the heartbeat reply: the refresh had none
        await raw.send(topic, "access_token", {"access_token": "bad.token.here"}, join_ref=join_ref)
        system = await raw.expect("system")
        assert system["payload"]["status"] == "error" and system["payload"]["extension"] == "system"
        await raw.expect("phx_close")
        await raw.alive()


async def test_private_channel_without_policy_is_refused(realtime: LocalRealtime) -> None:
    token = mint("authenticated", realtime.config.jwt_secret)
    async with connect(ws_url(realtime, token)) as ws:
        raw = Raw(ws, "1.0.0")
        topic = unique("vault")
        reply = await raw.join("realtime:" + topic, {"private": True})
        assert reply["payload"] == {"status": "error", "response": {
            "reason": f"Unauthorized: You do not have permissions to read from this Channel topic: {topic}"}}
        await raw.alive()


async def test_bad_postgres_changes_bindings_get_system_errors(raw: Raw) -> None:
    topic = "realtime:" + unique("t")
    reply = await raw.join(topic, {"postgres_changes": [
        {"event": "INSERT", "schema": "public", "table": "no_such_table"},
        {"event": "*", "schema": "public", "table": "orders", "filter": "qty=between.1"},
    ]})
    assert reply["payload"]["status"] == "ok" and len(reply["payload"]["response"]["postgres_changes"]) == 2
    first, second = await raw.expect("system"), await raw.expect("system")
    assert first["payload"]["status"] == second["payload"]["status"] == "error"
    assert first["payload"]["message"].startswith("Unable to subscribe to changes with given parameters")
    assert second["payload"]["message"].startswith("Error parsing `filter` params")


async def test_presence_track_needs_a_map(raw: Raw) -> None:
    topic = "realtime:" + unique("t")
    joined = await raw.join(topic, {"presence": {"key": "k", "enabled": True}})
    state = await raw.expect("presence_state")
    assert state["payload"] == {}
    ref = await raw.send(topic, "presence", {"type": "presence", "event": "track", "payload": [1]},
                         join_ref=joined["ref"])
    reply = await raw.expect("phx_reply")
    assert reply["ref"] == ref and reply["payload"]["status"] == "error"
    ref = await raw.send(topic, "presence", {"type": "presence", "event": "track", "payload": {"a": 1}},
                         join_ref=joined["ref"])
    messages = [await raw.recv(), await raw.recv()]
    diff = next(m for m in messages if m["event"] == "presence_diff")
    assert diff["payload"]["joins"]["k"]["metas"][0]["a"] == 1 and diff["payload"]["joins"]["k"]["metas"][0]["phx_ref"]
    assert diff["payload"]["leaves"] == {}


async def test_a_second_track_names_the_meta_it_replaces(raw: Raw) -> None:
    """As Phoenix's tracker: the update joins the new meta with phx_ref_prev and leaves the old one."""
    topic = "realtime:" + unique("t")
    joined = await raw.join(topic, {"presence": {"key": "k", "enabled": True}})
    await raw.expect("presence_state")
    await raw.send(topic, "presence", {"event": "track", "payload": {"status": "online"}}, join_ref=joined["ref"])
    first = (await raw.expect("presence_diff"))["payload"]["joins"]["k"]["metas"][0]
    await raw.expect("phx_reply")
    assert "phx_ref_prev" not in first
    await raw.send(topic, "presence", {"event": "track", "payload": {"status": "away"}}, join_ref=joined["ref"])
    diff = (await raw.expect("presence_diff"))["payload"]
    [joined_meta], [left_meta] = diff["joins"]["k"]["metas"], diff["leaves"]["k"]["metas"]
    assert joined_meta["status"] == "away" and joined_meta["phx_ref_prev"] == first["phx_ref"] == left_meta["phx_ref"]
    assert joined_meta["phx_ref"] != first["phx_ref"] and left_meta["status"] == "online"


async def test_tracking_on_a_channel_joined_without_presence_sends_the_state_first(
        raw: Raw, realtime: LocalRealtime) -> None:
    topic = "realtime:" + unique("t")
    other = await raw.join(topic, {"presence": {"key": "other", "enabled": True}})
    await raw.expect("presence_state")
    await raw.send(topic, "presence", {"event": "track", "payload": {"n": 1}}, join_ref=other["ref"])
    await raw.expect("presence_diff")
    await raw.expect("phx_reply")
    async with connect(ws_url(realtime, realtime.anon_key, raw.vsn)) as ws:
        late = Raw(ws, raw.vsn)
        joined = await late.join(topic, {"presence": {"key": "late"}})  # not enabled: no presence_state on join
        ref = await late.send(topic, "presence", {"event": "track", "payload": {"n": 2}}, join_ref=joined["ref"])
        state = await late.expect("presence_state")
        assert list(state["payload"]) == ["other"] and state["payload"]["other"]["metas"][0]["n"] == 1
        diff = await late.expect("presence_diff")
        assert diff["payload"]["joins"]["late"]["metas"][0]["n"] == 2
        reply = await late.expect("phx_reply")
        assert reply["ref"] == ref and reply["payload"]["status"] == "ok"
    assert (await raw.expect("presence_diff"))["payload"]["joins"]["late"]["metas"][0]["n"] == 2


async def test_idle_socket_is_closed(realtime_db: str) -> None:
    server = LocalRealtime(realtime_db, ServerConfig(port=0, idle_timeout=0.5))
    async with server, connect(ws_url(server, server.anon_key)) as ws:
        started = time.monotonic()
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert time.monotonic() - started < 3


async def test_rest_broadcast_status_codes(realtime: LocalRealtime) -> None:
    base = f"{realtime.url}/realtime/v1/api/broadcast"
    auth = {"apikey": realtime.anon_key, "Authorization": f"Bearer {realtime.service_role_key}"}
    async with httpx.AsyncClient() as http:
        ok = {"messages": [{"topic": "t", "event": "e", "payload": {"a": 1}}]}
        assert (await http.post(base, json=ok, headers=auth)).status_code == 202
        no_auth = await http.post(base, json=ok)
        assert no_auth.status_code == 401 and no_auth.json() == {"message": "Unauthorized"}
        bad_key = await http.post(base, json=ok, headers={"Authorization": "Bearer nope"})
        assert bad_key.status_code == 401
        bad = await http.post(base, json={"messages": [{"topic": "t", "payload": [1]}]}, headers=auth)
        assert bad.status_code == 422 and bad.json()["errors"]["messages"][0].keys() == {"event", "payload"}
        garbled = await http.post(base, content=b"{nope", headers={**auth, "Content-Type": "application/json"})
        assert garbled.status_code == 400
        single = f"{base}/t/events/e"
        assert (await http.post(single, json={"a": 1}, headers=auth)).status_code == 202
        assert (await http.post(single, content=b"\x00\x01", headers={
            **auth, "Content-Type": "application/octet-stream"})).status_code == 202
        text = await http.post(single, content=b"x", headers={**auth, "Content-Type": "text/plain"})
        assert text.status_code == 415
        huge = {"messages": [{"topic": "t", "event": "e", "payload": {"x": "y" * realtime.config.max_payload_bytes}}]}
        assert (await http.post(base, json=huge, headers=auth)).status_code == 422


async def test_binary_rest_broadcast_reaches_vsn2_clients_only(realtime: LocalRealtime) -> None:
    topic = unique("bin")
    async with connect(ws_url(realtime, realtime.anon_key, "2.0.0")) as v2, \
            connect(ws_url(realtime, realtime.anon_key, "1.0.0")) as v1:
        raw2, raw1 = Raw(v2, "2.0.0"), Raw(v1, "1.0.0")
        await raw2.join("realtime:" + topic)
        await raw1.join("realtime:" + topic)
        async with httpx.AsyncClient() as http:
            response = await http.post(
                f"{realtime.url}/realtime/v1/api/broadcast/{topic}/events/blob", content=b"\x00\xffraw",
                headers={"apikey": realtime.anon_key, "Content-Type": "application/octet-stream"})
        assert response.status_code == 202
        frame = await asyncio.wait_for(v2.recv(), 5)
        assert isinstance(frame, bytes) and frame[0] == 4
        topic_len, event_len, meta_len, encoding = frame[1:5]
        body = frame[5:]
        assert body[:topic_len].decode() == "realtime:" + topic
        assert body[topic_len:topic_len + event_len] == b"blob" and encoding == 0
        assert body[topic_len + event_len + meta_len:] == b"\x00\xffraw"
        await raw1.alive()  # nothing else was queued for the vsn 1.0.0 client


async def test_database_failures_answer_like_supabase_and_the_server_carries_on(
        make_db: Any, caplog: pytest.LogCaptureFixture) -> None:
    """realtime.messages without partitions: send() only warns; a private join gets
    'Unknown Error on Channel'; a joined private channel whose write probe fails gets
    phx_error; the socket keeps serving."""
    import psycopg

    url = make_db("tables")
    caplog.set_level(logging.CRITICAL, logger="supabase_push.local")  # the failures are expected
    server = LocalRealtime(url, ServerConfig(port=0))
    async with server, connect(ws_url(server, server.service_role_key)) as ws:
        raw = Raw(ws, "1.0.0")
        topic = unique("p")
        joined = await raw.join("realtime:" + topic, {"private": True})
        assert joined["payload"]["status"] == "ok"
        with psycopg.connect(url, autocommit=True) as conn:
            for (name,) in conn.execute("SELECT inhrelid::regclass::text FROM pg_inherits"
                                        " WHERE inhparent = 'realtime.messages'::regclass").fetchall():
                conn.execute(f"DROP TABLE {name}")
            notices: list[str] = []
            conn.add_notice_handler(lambda diag: notices.append(str(diag.message_primary)))
            conn.execute("SELECT realtime.send('{}'::jsonb, 'e', 't')")  # no error for the caller
            assert any(n.startswith("WarnSendingBroadcastMessage") for n in notices), notices

        await raw.send("realtime:" + topic, "broadcast", {"type": "broadcast", "event": "e", "payload": {}},
                       join_ref=joined["ref"])
        crashed = await raw.expect("phx_error")
        assert crashed["ref"] == joined["ref"] and crashed["payload"] == {}
        refused = await raw.join("realtime:" + unique("p"), {"private": True})
        assert refused["payload"] == {"status": "error", "response": {"reason": "Unknown Error on Channel"}}
        await raw.alive()


async def test_decoding_survives_a_dropped_replication_connection(realtime_db: str) -> None:
    import psycopg

    slots = "SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'supabase_push_local_%%'"
    with psycopg.connect(realtime_db, autocommit=True) as conn:
        existing = {row[0] for row in conn.execute(slots)}
        async with LocalRealtime(realtime_db, ServerConfig(port=0)) as server:
            [slot] = {row[0] for row in conn.execute(slots)} - existing
            async with connect(ws_url(server, server.anon_key)) as ws:
                raw = Raw(ws, "1.0.0")
                symbol = unique("DROP")
                await raw.join("realtime:" + unique("c"), {"postgres_changes": [
                    {"event": "INSERT", "schema": "public", "table": "orders", "filter": f"symbol=eq.{symbol}"}]})
                await raw.expect("system")
                conn.execute("INSERT INTO orders (id, symbol) VALUES (%s, %s)", (int(time.time() * 1000), symbol))
                assert (await raw.expect("postgres_changes"))["payload"]["data"]["record"]["symbol"] == symbol
                conn.execute("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = %s",
                             (slot,))
                for _ in range(100):
                    if server.stream_restarts:
                        break
                    await asyncio.sleep(0.1)
                assert server.stream_restarts == 1
                conn.execute("INSERT INTO orders (id, symbol) VALUES (%s, %s)", (int(time.time() * 1000) + 1, symbol))
                assert (await raw.expect("postgres_changes"))["payload"]["data"]["record"]["symbol"] == symbol


async def test_a_server_that_cannot_start_leaves_nothing_behind(make_db: Any) -> None:
    """Its port taken: start() fails with the OSError, and the connections it had opened (control, logical
    decoding with its slot, stamper) are closed, not left to the garbage collector."""
    import socket

    import psycopg

    url = make_db("tables")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = LocalRealtime(url, ServerConfig(host="127.0.0.1", port=taken.getsockname()[1], rest=False))
        with pytest.raises(OSError):
            await server.start()
    left = ("SELECT (SELECT count(*) FROM pg_stat_activity"
            "        WHERE datname = current_database() AND pid <> pg_backend_pid()),"
            " (SELECT count(*) FROM pg_replication_slots WHERE database = current_database())")
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(50):  # a closed connection's backend takes a moment to exit
            if conn.execute(left).fetchone() == (0, 0):
                break
            await asyncio.sleep(0.1)
        assert conn.execute(left).fetchone() == (0, 0)
