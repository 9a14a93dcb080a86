"""The local Realtime server, proven by the official Python client (PyPI ``realtime``)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from realtime import AsyncRealtimeChannel, AsyncRealtimeClient, RealtimeSubscribeStates
from realtime import RealtimeAcknowledgementStatus as Ack
from realtime import RealtimePostgresChangesListenEvent as Event

from supabase_push.embedded import LocalPostgres
from supabase_push.local import LocalRealtime, ServerConfig, mint
from supabase_push.local.stack import prepare

from .realtime_helpers import Inbox, options, unique


@pytest.fixture
async def client(realtime: LocalRealtime) -> AsyncIterator[AsyncRealtimeClient]:
    c = AsyncRealtimeClient(realtime.realtime_url, realtime.service_role_key, max_retries=2)
    yield c
    await c.close()


async def subscribe(channel: AsyncRealtimeChannel) -> None:
    states = Inbox()
    await channel.subscribe(lambda state, err: states((state, err)))
    state, err = states.items[-1]
    assert state == RealtimeSubscribeStates.SUBSCRIBED, (state, err)


def change_type(item: dict[str, Any]) -> str:
    return str(item["data"]["type"].value if hasattr(item["data"]["type"], "value") else item["data"]["type"])


async def test_postgres_changes_insert_update_delete_with_filter(
        client: AsyncRealtimeClient, db: psycopg.Connection[Any]) -> None:
    symbol = unique("SYM")
    inbox, system = Inbox(), Inbox()
    channel = client.channel(unique("orders"))
    channel.on_postgres_changes(Event.All, inbox, table="orders", filter=f"symbol=eq.{symbol}")
    channel.on_system(system)
    await subscribe(channel)
    await system.wait_for(lambda p: p.message == "Subscribed to PostgreSQL")

    base = uuid.uuid4().int % 10**9
    db.execute("INSERT INTO orders (id, symbol, qty, status, tags, meta) VALUES"
               " (%s, %s, 12.50, 'new', '{a,\"b c\"}', '{\"src\": {\"x\": 1}}'), (%s, 'OTHER', 1, 'new', NULL, NULL)",
               (base, symbol, base + 1))
    db.execute("UPDATE orders SET status = 'filled' WHERE id = %s", (base,))
    db.execute("DELETE FROM orders WHERE id IN (%s, %s)", (base, base + 1))

    got = await inbox.wait_for(lambda p: True, count=3)
    assert [change_type(p) for p in got] == ["INSERT", "UPDATE", "DELETE"]
    insert, update, delete = (p["data"] for p in got)
    assert insert["record"] == {"id": base, "symbol": symbol, "qty": 12.5, "status": "new", "tags": ["a", "b c"],
                                "placed_at": insert["record"]["placed_at"], "meta": {"src": {"x": 1}}}
    assert "T" in insert["record"]["placed_at"] and insert["record"]["placed_at"].endswith("+00:00")
    assert insert["commit_timestamp"].endswith("Z")
    assert [c["name"] for c in insert["columns"]] == ["id", "symbol", "qty", "status", "tags", "placed_at", "meta"]
    assert [c["type"] for c in insert["columns"]] == ["int8", "text", "numeric", "text", "_text", "timestamptz",
                                                      "jsonb"]
    assert "old_record" not in insert
    assert update["record"]["status"] == "filled" and update["old_record"]["status"] == "new"
    assert "record" not in delete and delete["old_record"]["symbol"] == symbol  # REPLICA IDENTITY FULL
    await asyncio.sleep(0.2)
    assert len(inbox.items) == 3, "the row that does not match the filter must not arrive"


async def test_each_documented_filter_operator(client: AsyncRealtimeClient, db: psycopg.Connection[Any]) -> None:
    symbol = unique("F")
    base = uuid.uuid4().int % 10**9
    operators = {"eq": "3", "neq": "3", "lt": "3", "lte": "3", "gt": "3", "gte": "3", "in": "(1,3,5)"}
    inboxes = {op: Inbox() for op in operators}
    channel = client.channel(unique("filters"))
    for op, value in operators.items():
        channel.on_postgres_changes(Event.Insert, inboxes[op], table="orders", filter=f"qty={op}.{value}")
    await subscribe(channel)
    for qty in range(1, 6):
        db.execute("INSERT INTO orders (id, symbol, qty) VALUES (%s, %s, %s)", (base + qty, symbol, qty))
    expected = {"eq": {3}, "neq": {1, 2, 4, 5}, "lt": {1, 2}, "lte": {1, 2, 3}, "gt": {4, 5}, "gte": {3, 4, 5},
                "in": {1, 3, 5}}
    mine = lambda p: p["data"]["record"]["symbol"] == symbol  # noqa: E731
    for op, qtys in expected.items():
        await inboxes[op].wait_for(mine, count=len(qtys))
        await asyncio.sleep(0.05)
        assert {p["data"]["record"]["qty"] for p in inboxes[op].matching(mine)} == qtys, op


async def test_database_broadcast_from_the_trigger_sql(
        realtime: LocalRealtime, client: AsyncRealtimeClient, db: psycopg.Connection[Any]) -> None:
    """The foundation's triggers call realtime.send (private); the server delivers the rows."""
    inbox = Inbox()
    channel = client.channel("position-updates", options(private=True))
    channel.on_broadcast("*", inbox)
    await subscribe(channel)
    symbol = unique("AAPL")
    db.execute("INSERT INTO positions (symbol, quantity, average_price) VALUES (%s, 10, 187.25)", (symbol,))
    [message] = await inbox.wait_for(lambda p: p["payload"]["record"]["symbol"] == symbol)
    assert message["event"] == "INSERT"
    envelope = message["payload"]
    assert envelope["topic"] == "position-updates" and envelope["table"] == "positions"
    assert envelope["record"]["quantity"] == 10 and envelope["record"]["average_price"] == 187.25
    assert ":" in envelope["cursor"]
    assert message["meta"]["id"]  # the realtime.messages row id

    other = AsyncRealtimeClient(realtime.realtime_url, realtime.service_role_key)
    public = other.channel("position-updates")  # same name, public: a separate stream
    public_inbox = Inbox()
    public.on_broadcast("*", public_inbox)
    await subscribe(public)
    try:
        db.execute("UPDATE positions SET quantity = 11 WHERE symbol = %s", (symbol,))
        await inbox.wait_for(lambda p: p["event"] == "UPDATE" and p["payload"]["record"]["symbol"] == symbol)
        await asyncio.sleep(0.2)
        assert public_inbox.items == [], "private database broadcasts never reach a public channel"
    finally:
        await other.close()


async def test_realtime_send_and_broadcast_changes_semantics(
        realtime: LocalRealtime, client: AsyncRealtimeClient, db: psycopg.Connection[Any]) -> None:
    topic = unique("sql")
    private_inbox, public_inbox = Inbox(), Inbox()
    private = client.channel(topic, options(private=True))
    private.on_broadcast("*", private_inbox)
    await subscribe(private)
    other = AsyncRealtimeClient(realtime.realtime_url, realtime.anon_key)
    public = other.channel(topic)
    public.on_broadcast("*", public_inbox)
    await subscribe(public)
    try:
        db.execute("SELECT realtime.send('{\"a\": 1}'::jsonb, 'ev', %s)", (topic,))  # private by default
        db.execute("SELECT realtime.send('{\"id\": \"mine\", \"b\": 2}'::jsonb, 'ev', %s, false)", (topic,))
        with db.transaction(force_rollback=True):
            db.execute("SELECT realtime.send('{\"rolled\": \"back\"}'::jsonb, 'ev', %s, false)", (topic,))
        [sent] = await private_inbox.wait_for(lambda p: True)
        assert sent["payload"]["a"] == 1 and sent["payload"]["id"] == sent["meta"]["id"]  # id injected
        [public_sent] = await public_inbox.wait_for(lambda p: True)
        assert public_sent["payload"] == {"id": "mine", "b": 2}

        db.execute("CREATE TEMP TABLE t (x int)")
        db.execute("""CREATE FUNCTION pg_temp.f() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
                      PERFORM realtime.broadcast_changes(%s, TG_OP, TG_OP, TG_TABLE_NAME, TG_TABLE_SCHEMA, NEW, OLD);
                      RETURN NULL; END $$""".replace("%s", f"'{topic}'"))
        db.execute("CREATE TRIGGER t AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION pg_temp.f()")
        db.execute("INSERT INTO t VALUES (7)")
        [changed] = await private_inbox.wait_for(lambda p: p["event"] == "INSERT")
        assert changed["payload"]["record"] == {"x": 7} and changed["payload"]["old_record"] is None
        assert changed["payload"]["operation"] == "INSERT" and changed["payload"]["id"]

        # A send that cannot be written is a warning, never an error for the caller.
        db.execute("SELECT realtime.send('[1, 2]'::jsonb, 'ev', %s)", (topic,))
        await asyncio.sleep(0.2)
        assert len(public_inbox.items) == 1 and len(private_inbox.items) == 2
    finally:
        await other.close()


async def test_broadcast_self_and_ack_between_clients(realtime: LocalRealtime, client: AsyncRealtimeClient) -> None:
    topic = unique("room")
    a_inbox, b_inbox = Inbox(), Inbox()
    a = client.channel(topic, options(broadcast={"self": True, "ack": True}))
    a.on_broadcast("*", a_inbox)
    await subscribe(a)
    other = AsyncRealtimeClient(realtime.realtime_url, realtime.anon_key)
    b = other.channel(topic)
    b.on_broadcast("ping", b_inbox)
    await subscribe(b)
    try:
        acks = Inbox()
        (await a.push("broadcast", {"type": "broadcast", "event": "ping", "payload": {"n": 1}})).receive(Ack.Ok, acks)
        await acks.wait_for(lambda r: True)
        await b_inbox.wait_for(lambda p: p["payload"] == {"n": 1})
        await a_inbox.wait_for(lambda p: p["payload"] == {"n": 1})  # self: true
        await b.send_broadcast("ping", {"n": 2})
        await a_inbox.wait_for(lambda p: p["payload"] == {"n": 2})
        await asyncio.sleep(0.2)
        assert [p["payload"] for p in b_inbox.items] == [{"n": 1}], "self is false for b"
    finally:
        await other.close()


async def test_rest_broadcast_with_http_send(realtime: LocalRealtime, client: AsyncRealtimeClient) -> None:
    topic = unique("rest")
    inbox, private_inbox = Inbox(), Inbox()
    channel = client.channel(topic)
    channel.on_broadcast("*", inbox)
    await subscribe(channel)
    # a client holds one channel per topic: a second client listens on the private stream
    other = AsyncRealtimeClient(realtime.realtime_url, realtime.service_role_key)
    private = other.channel(topic, options(private=True))
    private.on_broadcast("*", private_inbox)
    await subscribe(private)
    try:
        await channel.http_send("fill", {"qty": 5})
        await private.http_send("secret", {"qty": 6})
        await inbox.wait_for(lambda p: p["event"] == "fill" and p["payload"] == {"qty": 5})
        await private_inbox.wait_for(lambda p: p["event"] == "secret" and p["payload"] == {"qty": 6})
        await asyncio.sleep(0.2)
        assert [p["event"] for p in inbox.items] == ["fill"]
    finally:
        await other.close()


async def test_presence_between_clients(realtime: LocalRealtime, client: AsyncRealtimeClient) -> None:
    topic = unique("presence")
    a = client.channel(topic, options(presence={"key": "alice", "enabled": True}))
    syncs = Inbox()
    joins = Inbox()
    a.on_presence_sync(lambda: syncs(dict(a.presence_state())))
    a.on_presence_join(lambda key, current, new: joins(key))
    await subscribe(a)
    await a.track({"status": "online"})
    other = AsyncRealtimeClient(realtime.realtime_url, realtime.anon_key)
    b = other.channel(topic, options(presence={"key": "bob", "enabled": True}))
    b.on_presence_sync(lambda: None)
    await subscribe(b)
    await b.track({"status": "away"})
    try:
        await joins.wait_for(lambda k: k == "bob")
        [state] = (await syncs.wait_for(lambda s: {"alice", "bob"} <= s.keys()))[:1]
        assert state["bob"][0]["status"] == "away" and state["bob"][0]["presence_ref"]
        async with asyncio.timeout(10):  # bob's own view comes with his next sync
            while b.presence_state().keys() != {"alice", "bob"}:
                await asyncio.sleep(0.02)
        await b.track({"status": "busy"})  # an update: one meta for bob, the new one (phx_ref_prev on the wire)
        [updated] = (await syncs.wait_for(lambda s: [m["status"] for m in s.get("bob", [])] == ["busy"]))[:1]
        assert "phx_ref_prev" not in updated["bob"][0] and updated["bob"][0]["presence_ref"] != \
            state["bob"][0]["presence_ref"]
    finally:
        await other.close()
    await syncs.wait_for(lambda s: "bob" not in s and "alice" in s)  # bob's socket closed: a leave


async def test_tables_added_to_and_removed_from_the_publication(
        client: AsyncRealtimeClient, db: psycopg.Connection[Any]) -> None:
    table = f"late_{uuid.uuid4().hex[:8]}"
    db.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, note text)")
    db.execute(f"ALTER PUBLICATION supabase_realtime ADD TABLE {table}")
    inbox, marker = Inbox(), Inbox()
    channel = client.channel(unique("late"))
    channel.on_postgres_changes(Event.Insert, inbox, table=table)
    channel.on_postgres_changes(Event.Insert, marker, table="orders")
    await subscribe(channel)
    db.execute(f"INSERT INTO {table} VALUES (1, 'while published')")
    await inbox.wait_for(lambda p: p["data"]["record"]["id"] == 1)

    db.execute(f"ALTER PUBLICATION supabase_realtime DROP TABLE {table}")
    db.execute(f"INSERT INTO {table} VALUES (2, 'after removal')")
    marker_id = uuid.uuid4().int % 10**9
    db.execute("INSERT INTO orders (id, symbol) VALUES (%s, 'MARK')", (marker_id,))
    await marker.wait_for(lambda p: p["data"]["record"]["id"] == marker_id)  # later in commit order
    assert [p["data"]["record"]["id"] for p in inbox.items] == [1]


async def test_private_channel_needs_a_read_policy(realtime: LocalRealtime, db: psycopg.Connection[Any]) -> None:
    topic = unique("desk")
    user = str(uuid.uuid4())
    token = mint("authenticated", realtime.config.jwt_secret, sub=user)
    c = AsyncRealtimeClient(realtime.realtime_url, token, max_retries=1)
    try:
        denied = Inbox()
        channel = c.channel(topic, options(private=True))
        await channel.subscribe(lambda state, err: denied((state, str(err))))
        state, err = denied.items[0]
        assert state == RealtimeSubscribeStates.CHANNEL_ERROR
        assert f"Unauthorized: You do not have permissions to read from this Channel topic: {topic}" in err
        await c.remove_channel(channel)

        policy = f"read_{uuid.uuid4().hex[:8]}"
        db.execute(f"""CREATE POLICY {policy} ON realtime.messages FOR SELECT TO authenticated
                       USING (realtime.topic() = '{topic}' AND (auth.jwt() ->> 'sub') = '{user}')""")
        try:
            inbox = Inbox()
            allowed = c.channel(topic, options(private=True))
            allowed.on_broadcast("*", inbox)
            await subscribe(allowed)
            db.execute("SELECT realtime.send('{\"ok\": true}'::jsonb, 'ev', %s)", (topic,))
            await inbox.wait_for(lambda p: p["payload"]["ok"] is True)
            # Read but no write policy: its broadcasts are dropped, as on Supabase.
            await allowed.send_broadcast("ev", {"from": "client"})
            await asyncio.sleep(0.3)
            assert all("from" not in p["payload"] for p in inbox.items)
        finally:
            db.execute(f"DROP POLICY {policy} ON realtime.messages")
    finally:
        await c.close()


async def test_the_slot_advances_while_serving_and_is_gone_after_stop(realtime_db: str) -> None:
    """Temporary slot: a stopped server retains no WAL; a running one confirms what it read."""
    slots = "SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'supabase_push_local_%%'"
    with psycopg.connect(realtime_db, autocommit=True) as conn:
        existing = {row[0] for row in conn.execute(slots)}
        async with LocalRealtime(realtime_db, ServerConfig(port=0)):
            [slot] = {row[0] for row in conn.execute(slots)} - existing
            temporary, start = conn.execute(
                "SELECT temporary, confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = %s",
                (slot,)).fetchone() or (None, None)
            assert temporary is True
            conn.execute("INSERT INTO orders (id, symbol) VALUES (%s, 'WAL')", (uuid.uuid4().int % 10**9,))
            for _ in range(50):
                await asyncio.sleep(0.1)
                row = conn.execute("SELECT confirmed_flush_lsn > %s::pg_lsn FROM pg_replication_slots"
                                   " WHERE slot_name = %s", (str(start), slot)).fetchone()
                if row and row[0]:
                    break
            else:
                raise AssertionError("the slot's confirmed_flush_lsn never advanced")
        await asyncio.sleep(0.2)
        assert conn.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone() is None


def test_verify_passes_on_the_local_servers_realtime_schema(realtime: LocalRealtime, realtime_db: str) -> None:
    """The foundation's Supabase-path checks, on the real realtime.messages partitions."""
    from supabase_push import schema

    with psycopg.connect(realtime_db, autocommit=True) as conn:
        report = schema.verify(conn)
        names = {check.name: check.status for check in report.checks}
        assert names["realtime.send"] == "ok"
        assert "realtime.messages partition for today" not in names, "only reported when missing"
        assert report.ok, report.problems


async def test_a_presence_only_read_policy_gets_presence_and_no_broadcasts(realtime: LocalRealtime,
                                                                          db: psycopg.Connection[Any]) -> None:
    """Regression: a policy that lets a user read a private channel's presence let them receive its database
    broadcasts too. Supabase checks each extension: presence joins, broadcasts stay private."""
    topic = unique("desk")
    user = str(uuid.uuid4())
    policy = f"presence_{uuid.uuid4().hex[:8]}"
    db.execute(f"""CREATE POLICY {policy} ON realtime.messages FOR SELECT TO authenticated
                   USING (realtime.topic() = '{topic}' AND extension = 'presence'
                          AND (auth.jwt() ->> 'sub') = '{user}')""")
    c = AsyncRealtimeClient(realtime.realtime_url, mint("authenticated", realtime.config.jwt_secret, sub=user),
                            max_retries=1)
    try:
        inbox, synced = Inbox(), Inbox()
        channel = c.channel(topic, options(private=True, presence={"key": user, "enabled": True}))
        channel.on_broadcast("*", inbox)
        channel.on_presence_sync(lambda: synced("sync"))
        await subscribe(channel)
        await synced.wait_for(lambda item: item == "sync")
        db.execute("SELECT realtime.send('{\"secret\": true}'::jsonb, 'ev', %s)", (topic,))
        await asyncio.sleep(0.5)
        assert inbox.items == []
    finally:
        await c.close()
        db.execute(f"DROP POLICY {policy} ON realtime.messages")


HELD = """
CREATE TABLE held (id bigint PRIMARY KEY, body text NOT NULL);
ALTER TABLE held ENABLE ROW LEVEL SECURITY;
CREATE POLICY no_secrets ON held FOR SELECT TO authenticated USING (body <> 'secret');
GRANT SELECT ON held TO authenticated;
ALTER PUBLICATION supabase_realtime ADD TABLE held;
INSERT INTO held VALUES (1, 'open');
"""


async def test_rls_is_checked_once_the_change_is_visible_not_when_decoded() -> None:
    """Decoding streams a commit once its record is flushed, before the transaction is visible to others; a
    synchronous standby that never answers holds a commit in between for as long as we like. A check made
    there would withhold an INSERT for good, and pass an UPDATE by the row as it was before it."""
    with LocalPostgres(settings={"synchronous_standby_names": "nobody", "synchronous_commit": "local"}) as pg:
        url = pg.dsn
        with psycopg.connect(url, autocommit=True) as conn:
            prepare(conn, tables=False, broadcast_mode=None)
            conn.execute(HELD)
        async with LocalRealtime(url, ServerConfig(port=0, rest=False, auth=False, stamp=False)) as server:
            client = AsyncRealtimeClient(server.realtime_url,
                                         mint("authenticated", server.config.jwt_secret, sub=str(uuid.uuid4())),
                                         max_retries=1)
            inbox, system = Inbox(), Inbox()
            channel = client.channel(unique("held"))
            channel.on_postgres_changes(Event.All, inbox, table="held")
            channel.on_system(system)
            try:
                await subscribe(channel)
                await system.wait_for(lambda p: p.message == "Subscribed to PostgreSQL")

                await _held_commit(url, "INSERT INTO held VALUES (2, 'new')", inbox)  # else withheld for good
                [insert] = await inbox.wait_for(lambda p: change_type(p) == "INSERT")
                assert insert["data"]["record"] == {"id": 2, "body": "new"}

                await _held_commit(url, "UPDATE held SET body = 'secret' WHERE id = 1", inbox)  # else sent as 'open'
                await _held_commit(url, "INSERT INTO held VALUES (3, 'after')", inbox)
                await inbox.wait_for(lambda p: p["data"]["record"]["id"] == 3)
                assert [change_type(p) for p in inbox.items] == ["INSERT", "INSERT"], "the secret must not be sent"
            finally:
                await client.close()


async def _held_commit(url: str, statement: str, inbox: Inbox) -> None:
    """Run ``statement`` with a commit the standby holds until the local server has decoded it, check that
    nothing more reached ``inbox`` meanwhile, then let the commit go."""
    delivered = list(inbox.items)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as writer:
        await writer.execute("SET synchronous_commit = on")
        running = asyncio.create_task(writer.execute(statement))
        with psycopg.connect(url, autocommit=True) as conn:
            try:
                await _decoded_while_held(conn, writer.info.backend_pid)
                await asyncio.sleep(0.3)  # time for a check made too early
                assert inbox.items == delivered, "nothing is delivered while the commit is invisible"
            finally:  # canceling the wait for the standby: committed locally, and now visible
                conn.execute("SELECT pg_cancel_backend(%s)", (writer.info.backend_pid,))
        await running


async def _decoded_while_held(conn: psycopg.Connection[Any], pid: int) -> None:
    """Until the backend ``pid`` waits for the standby with its commit flushed, and the local server's slot has
    confirmed that commit (it confirms a transaction once it has it)."""
    for _ in range(250):
        state = conn.execute("SELECT wait_event, pg_current_wal_flush_lsn() FROM pg_stat_activity WHERE pid = %s",
                             (pid,)).fetchone()
        if state is not None and state[0] == "SyncRep":
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("the commit was never held for the standby")
    for _ in range(250):
        if conn.execute("SELECT bool_and(confirmed_flush_lsn >= %s) FROM pg_replication_slots"
                        " WHERE slot_name LIKE 'supabase_push_local_%%'", (state[1],)).fetchone() == (True,):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the local server never decoded the held commit")
