"""What the installed triggers and the stamper do to real writes: change log, cursor, notifications.

Writers only append; a stamping loop (what every supabase-push process runs, or pg_cron) gives the
changes their cursor and sends one NOTIFY per topic and round, a hint without rows.
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import psycopg
import pytest

from supabase_push.changelog import fetch_change, read_changes
from supabase_push.events import START, ChangeEvent, Cursor
from supabase_push.stamper import stamping

TOPICS = ("position-updates", "trade-updates", "portfolio-updates")


def listen(url: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(url, autocommit=True)
    for topic in TOPICS:
        conn.execute(psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(topic)))
    return conn


@pytest.fixture(autouse=True)
def _stamped(request: pytest.FixtureRequest) -> Any:
    """A stamping loop on the test's database, for tests that take ``installed_url`` or ``installed``."""
    if not {"installed_url", "installed"} & set(request.fixturenames):
        yield
        return
    with stamping(request.getfixturevalue("installed_url")):
        yield


def notifications(conn: psycopg.Connection[Any], last: Cursor) -> list[psycopg.Notify]:
    """The hints until one names cursor ``last`` (a round's hint names its topic's last change)."""
    received: list[psycopg.Notify] = []
    for note in conn.notifies(timeout=5):
        received.append(note)
        if json.loads(note.payload)["cursor"] == str(last):
            return received
    raise AssertionError(f"no hint named {last}; got {[n.payload for n in received]}")


def test_insert_update_delete_envelopes(installed_url: str) -> None:
    with listen(installed_url) as listener, psycopg.connect(installed_url, autocommit=True) as db:
        row_id = db.execute(
            "INSERT INTO positions (symbol, quantity, current_price) VALUES ('SPY', 10, 500) "
            "RETURNING id").fetchone()[0]  # type: ignore[index]
        db.execute("UPDATE positions SET current_price = 501.25 WHERE id = %s", (row_id,))
        db.execute("DELETE FROM positions WHERE id = %s", (row_id,))
        logged = read_changes(db)
        notes = notifications(listener, logged[-1].cursor)

        pushed = [ChangeEvent.model_validate_json(n.payload) for n in notes]
    assert {n.channel for n in notes} == {"position-updates"}
    # A NOTIFY says where the change is (id, cursor, commit time), never what it holds: any role may LISTEN.
    by_cursor = {e.cursor: e for e in logged}
    assert all((e.id, e.op, e.commit_ts) == (by_cursor[e.cursor].id, by_cursor[e.cursor].op,
                                             by_cursor[e.cursor].commit_ts) for e in pushed)
    assert [e.position for e in pushed] == sorted({e.position for e in pushed})
    assert all(e.truncated and e.record is None and e.old_record is None for e in pushed)
    insert, update, delete = logged
    assert insert.record is not None and insert.record["symbol"] == "SPY"
    assert insert.old_record is None
    assert update.record is not None and update.old_record is not None
    assert (update.old_record["current_price"], update.record["current_price"]) == (500, 501.25)
    assert delete.record is None and delete.old_record is not None
    assert delete.old_record["id"] == row_id
    assert all(e.topic == "position-updates" and e.table == "positions" and
               e.schema_name == "public" for e in pushed)
    cursors = [e.position for e in pushed]
    assert cursors == sorted(set(cursors)) and cursors[-1] == delete.position  # a round's hint: its last change


def test_truncate_is_one_change_pushed_and_logged_in_order(installed_url: str) -> None:
    """Regression: TRUNCATE of a routed table was not captured, and verify stayed ok."""
    from supabase_push import schema

    with listen(installed_url) as listener, psycopg.connect(installed_url, autocommit=True) as db:
        db.execute("INSERT INTO trades (symbol, side, quantity, price) VALUES ('GONE', 'buy', 1, 1)")
        db.execute("TRUNCATE trades")
        db.execute("INSERT INTO trades (symbol, side, quantity, price) VALUES ('NEW', 'buy', 1, 1)")
        logged = read_changes(db, topics=["trade-updates"])
        pushed = [ChangeEvent.model_validate_json(n.payload) for n in notifications(listener, logged[-1].cursor)]
        assert {(e.op, e.cursor) for e in pushed} <= {(e.op, e.cursor) for e in logged}
        assert [e.op for e in logged] == ["INSERT", "TRUNCATE", "INSERT"]
        truncate = logged[1]
        assert truncate.record is None and truncate.old_record is None and truncate.table == "trades"
        assert schema.verify(db).ok
        db.execute("DROP TRIGGER supabase_push_truncate ON trades")
        missing = {c.name: c.status for c in schema.verify(db).problems}
        assert missing["supabase_push_truncate on public.trades"] == "missing"
        schema.apply(db)
        assert schema.verify(db).ok
        schema.uninstall(db)
        assert db.execute("SELECT count(*) FROM pg_trigger WHERE tgname = 'supabase_push_truncate'").fetchone() == (0,)


def test_one_transaction_one_commit_sequence(installed: psycopg.Connection[Any]) -> None:
    with installed.transaction():
        installed.execute("INSERT INTO trades (symbol, side, quantity, price) VALUES ('A','buy',1,1)")
        installed.execute("INSERT INTO positions (symbol) VALUES ('A')")
        installed.execute("INSERT INTO portfolio_snapshots (total_value) VALUES (1)")
    events = read_changes(installed)
    assert [e.topic for e in events] == ["trade-updates", "position-updates", "portfolio-updates"]
    assert len({e.position.seq for e in events}) == 1
    assert len({e.commit_ts for e in events}) == 1


def test_rolled_back_changes_leave_no_trace(installed_url: str) -> None:
    with listen(installed_url) as listener, psycopg.connect(installed_url) as db:
        db.execute("INSERT INTO trades (symbol, side, quantity, price) VALUES ('X','buy',1,1)")
        db.rollback()
        with db.transaction():
            db.execute("INSERT INTO trades (symbol, side, quantity, price) VALUES ('kept','buy',1,1)")
            with pytest.raises(psycopg.errors.RaiseException), db.transaction():
                db.execute("INSERT INTO trades (symbol, side, quantity, price) "
                           "VALUES ('undone','buy',1,1)")
                db.execute("DO $$ BEGIN RAISE EXCEPTION 'undo'; END $$")
        db.commit()
        notes = list(listener.notifies(timeout=1))
        events = read_changes(db)
    assert [e.record["symbol"] for e in events if e.record] == ["kept"]
    assert [json.loads(n.payload)["cursor"] for n in notes] == [str(e.cursor) for e in events]  # only "kept"


def test_large_row_goes_by_reference(installed_url: str) -> None:
    """A 50 kB row: its NOTIFY stays far below the 8000-byte limit (it has no rows), then by cursor."""
    big = "x" * 50_000
    with listen(installed_url) as listener, psycopg.connect(installed_url, autocommit=True) as db:
        db.execute("INSERT INTO trades (symbol, side, quantity, price, order_id) "
                   "VALUES ('BIG','buy',1,1,%s)", (big,))
        (note,) = notifications(listener, read_changes(db)[-1].cursor)
        pushed = ChangeEvent.model_validate_json(note.payload)
        assert len(note.payload.encode()) < 8000
        assert pushed.truncated and pushed.record is None
        full = fetch_change(db, pushed.position)
    assert full is not None and full.id == pushed.id
    assert full.record is not None and full.record["order_id"] == big


def test_broadcast_off_still_logs(make_db: Any) -> None:
    from supabase_push import schema

    url = make_db("tables")
    with psycopg.connect(url, autocommit=True) as db, stamping(url):
        schema.apply(db, broadcast_mode="none")
        with listen(url) as listener:
            db.execute("INSERT INTO positions (symbol) VALUES ('quiet')")
            assert list(listener.notifies(timeout=0.5)) == []
        assert [e.record["symbol"] for e in read_changes(db) if e.record] == ["quiet"]


async def test_concurrent_writers_lose_nothing(installed_url: str) -> None:
    """200 concurrent writers, a reader polling the cursor meanwhile: every change once, in
    commit order, and every row's versions in the order they were written."""
    writers, txns_per_writer = 200, 5
    stop = asyncio.Event()
    seen: list[ChangeEvent] = []

    async def writer(n: int) -> None:
        rng = random.Random(n)
        async with await psycopg.AsyncConnection.connect(installed_url, autocommit=True) as db:
            for i in range(txns_per_writer):
                async with db.transaction():
                    await db.execute(
                        "INSERT INTO trades (symbol, side, quantity, price, order_id) "
                        "VALUES ('T', 'buy', 1, 1, %s)", (f"{n}-{i}",))
                    await asyncio.sleep(rng.uniform(0, 0.003))  # keep the transaction open
                    await db.execute(
                        "UPDATE positions SET quantity = quantity + 1 WHERE symbol = %s",
                        (f"HOT{n % 10}",))

    async def reader() -> None:
        cursor = START
        async with await psycopg.AsyncConnection.connect(installed_url, autocommit=True) as db:
            while True:
                # Done once the writers are and the stamper has every commit (it stamps after
                # commit, so the last ones may still be waiting when the writers return).
                caught_up = stop.is_set() and await _nothing_pending(db)
                async with db.cursor() as cur:
                    await cur.execute(
                        "SELECT seq, id, topic, schema_name, table_name, op, record, old_record,"
                        " committed_at FROM public.supabase_push_changes(%s, %s, 100)",
                        (cursor.seq, cursor.id))
                    rows = await cur.fetchall()
                for seq, cid, topic, sch, table, op, record, old, at in rows:
                    seen.append(ChangeEvent(id=cid, cursor=Cursor(seq, cid), topic=topic,
                                            schema=sch, table=table, op=op, record=record,
                                            old_record=old, commit_ts=at))
                    cursor = Cursor(seq, cid)
                if not rows and caught_up:
                    return
                if len(rows) < 100:
                    await asyncio.sleep(0.005)

    async with await psycopg.AsyncConnection.connect(installed_url, autocommit=True) as db:
        for hot in range(10):
            await db.execute("INSERT INTO positions (symbol, quantity) VALUES (%s, 0)",
                             (f"HOT{hot}",))
    reading = asyncio.create_task(reader())
    await asyncio.gather(*(writer(n) for n in range(writers)))
    stop.set()
    await reading

    trades = [e for e in seen if e.table == "trades"]
    updates = [e for e in seen if e.table == "positions" and e.op == "UPDATE"]
    assert len(seen) == len({e.id for e in seen}), "a change was delivered twice"
    assert sorted(e.record["order_id"] for e in trades if e.record) == sorted(
        f"{n}-{i}" for n in range(writers) for i in range(txns_per_writer))
    assert len(updates) == writers * txns_per_writer
    assert [e.position for e in seen] == sorted(e.position for e in seen)
    for hot in range(10):  # per-row order: quantities climb 1, 2, 3... with no gap or swap
        quantities = [e.record["quantity"] for e in updates
                      if e.record and e.record["symbol"] == f"HOT{hot}"]
        assert quantities == list(range(1, len(quantities) + 1))


async def _nothing_pending(db: psycopg.AsyncConnection[Any]) -> bool:
    row = await (await db.execute("SELECT changes FROM supabase_push.pending_v2()")).fetchone()
    return row is not None and row[0] == 0


async def test_pushes_form_an_exact_chain_under_concurrent_writers(installed_url: str) -> None:
    """Every hint names, as prev, each topic's last change before its round, and as cursor its topic's
    last change in the round: listening to some topics, the latest prev over them is the latest cursor
    of the hints before, so a subscriber can tell a complete stream from a gap."""
    async with await psycopg.AsyncConnection.connect(installed_url, autocommit=True) as listener:
        for topic in ("trade-updates", "position-updates"):
            await listener.execute(f'LISTEN "{topic}"')

        async def writer(n: int) -> None:
            async with await psycopg.AsyncConnection.connect(installed_url, autocommit=True) as db:
                for i in range(10):
                    async with db.transaction():
                        await db.execute("INSERT INTO trades (symbol, side, quantity, price) VALUES (%s,'buy',1,1)",
                                         (f"{n}-{i}",))
                        if i % 2:
                            await db.execute("INSERT INTO positions (symbol) VALUES (%s)", (f"{n}-{i}",))

        await asyncio.gather(*(writer(n) for n in range(8)))
        last = {topic: read_changes_sync(installed_url, topic)[-1].cursor for topic in ("trade-updates",
                                                                                        "position-updates")}
        pushed: list[ChangeEvent] = []
        async for note in listener.notifies(timeout=5):
            pushed.append(ChangeEvent.model_validate_json(note.payload))
            if {t: max((e.position for e in pushed if e.topic == t), default=START) for t in last} == \
                    last:
                break
    assert pushed[0].prev == {}

    def before(event: ChangeEvent, topics: set[str]) -> Cursor:
        assert event.prev is not None
        return max((Cursor.parse(c) for t, c in event.prev.items() if t in topics), default=START)

    rounds: list[list[ChangeEvent]] = []  # the hints of one round share their prev, and come together
    for event in pushed:
        if rounds and rounds[-1][0].prev == event.prev:
            rounds[-1].append(event)
        else:
            rounds.append([event])
    assert len(rounds) > 1
    for topics in ({"trade-updates", "position-updates"}, {"trade-updates"}, {"position-updates"}):
        seen = START  # what a subscriber to these topics has read once it has read each round
        for hints in rounds:
            mine = [e for e in hints if e.topic in topics]
            if mine:
                assert before(mine[0], topics) == seen, f"{mine[0].cursor}: prev {mine[0].prev}, read to {seen}"
                seen = max(e.position for e in mine)
        assert seen == max(last[t] for t in topics)


def read_changes_sync(url: str, topic: str) -> list[ChangeEvent]:
    with psycopg.connect(url, autocommit=True) as conn:
        return read_changes(conn, topics=[topic], limit=10_000)
