"""Snapshot, then the stream (issue 18, part 2): a subscriber started with ``start="snapshot"`` gets the current
rows of its topics' tables read in one snapshot, then every change after exactly those rows: nothing in
between lost, nothing applied twice, whenever it starts and however busy the writers are."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from supabase_push import _json
from supabase_push.changelog import read_changes, stamp
from supabase_push.config import Settings
from supabase_push.events import START, ChangeEvent
from supabase_push.local import tokens
from supabase_push.local.stack import prepare
from supabase_push.relay.policy import Policy
from supabase_push.stamper import stamping
from supabase_push.subscribe import RestReader, Subscriber
from supabase_push.subscribe.readers import Reader, SqlReader

from .conftest import DatabaseFactory
from .postgrest import PostgREST
from .relay_helpers import ADMIN, ALICE, SseStream, relay, token

SUBSCRIBERS, WRITERS, SEED = 20, 8, 40


class Book:
    """Positions by id, rebuilt from what a subscriber hands out; any change that does not fit the book
    as it stands (an INSERT of a row it holds, an UPDATE or DELETE of one it lacks, or whose old row is
    not the one the book holds) is recorded."""

    def __init__(self) -> None:
        self.rows: dict[int, dict[str, Any]] = {}
        self.misfits: list[str] = []
        self.snapshot_rows = 0

    def apply(self, event: ChangeEvent) -> None:
        if event.op == "SNAPSHOT":
            if event.record is None:  # a snapshot started again
                self.rows.clear()
                return
            self.snapshot_rows += 1
            self.rows[int(event.record["id"])] = event.record
            return
        key = int((event.record or event.old_record or {})["id"])
        if (event.op == "INSERT" and key in self.rows) or (event.op in ("UPDATE", "DELETE") and key not in self.rows):
            self.misfits.append(f"{event.op} {key} at {event.cursor}")
        elif event.op in ("UPDATE", "DELETE") and self.rows[key] != event.old_record:  # applied twice, or one lost
            self.misfits.append(f"{event.op} {key} at {event.cursor} from another row than the book's")
        if event.op == "DELETE":
            self.rows.pop(key, None)
        else:
            assert event.record is not None
            self.rows[key] = event.record


def table_now(url: str) -> dict[int, dict[str, Any]]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT to_jsonb(p)::text FROM positions p").fetchall()
    return {int(row["id"]): row for row in (_json.loads(text, exact_numbers=True) for (text,) in rows)}


class Writers:
    """``n`` threads of 1-3 statement transactions on positions: updates of hot rows, inserts, deletes,
    one in ten rolled back."""

    def __init__(self, url: str, n: int = WRITERS) -> None:
        self.url, self.n = url, n
        self.stop = threading.Event()
        self.committed = 0
        self.errors: list[BaseException] = []
        self._threads = [threading.Thread(target=self._write, args=(k,), daemon=True) for k in range(n)]

    def __enter__(self) -> Writers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(10)
        assert not self.errors, self.errors

    def _write(self, k: int) -> None:
        rng = random.Random(k)
        try:
            with psycopg.connect(self.url, autocommit=True) as conn:
                while not self.stop.is_set():
                    try:
                        self._transaction(conn, rng, k)
                    except psycopg.errors.DeadlockDetected:
                        continue  # two random picks in opposite orders: gone whole, like any rolled back
                    self.committed += 1
                    time.sleep(rng.uniform(0, 0.004))
        except BaseException as exc:  # reported by __exit__
            self.errors.append(exc)

    @staticmethod
    def _transaction(conn: psycopg.Connection[Any], rng: random.Random, k: int) -> None:
        with conn.transaction(force_rollback=rng.random() < 0.1):
            for _ in range(rng.randint(1, 3)):
                roll = rng.random()
                if roll < 0.7:
                    conn.execute("UPDATE positions SET quantity = quantity + 1, updated_at = now() "
                                 "WHERE id = (SELECT id FROM positions ORDER BY random() LIMIT 1)")
                elif roll < 0.85:
                    conn.execute("INSERT INTO positions (symbol, quantity) VALUES (%s, 1)", (f"W{k}",))
                else:
                    conn.execute("DELETE FROM positions WHERE id = "
                                 "(SELECT id FROM positions ORDER BY random() LIMIT 1)")


async def rebuild_books(url: str, make_reader: Any) -> tuple[list[Book], list[Subscriber]]:
    """20 subscribers, each started with a snapshot at a random moment while the writers write; then, the
    writers stopped, each reads on until it holds the log's newest change."""
    books = [Book() for _ in range(SUBSCRIBERS)]
    started: dict[int, Subscriber] = {}

    async def follow(n: int, delay: float) -> None:
        await asyncio.sleep(delay)
        reader: Reader = make_reader()
        subscriber = Subscriber(reader=reader, topics=["position-updates"], start="snapshot", poll_interval=0.05,
                                page_size=7)  # pages of 7: a snapshot of many pages
        started[n] = subscriber
        subscriber.on("position-updates", books[n].apply)
        await subscriber.start()

    rng = random.Random(7)
    try:
        with Writers(url) as writers:
            await asyncio.gather(*(follow(n, rng.uniform(0, 2.5)) for n in range(SUBSCRIBERS)))
            await asyncio.sleep(0.5)
            async with asyncio.timeout(30):  # enough writes meanwhile, however slow the machine (CI: 161 in 3 s)
                while writers.committed <= 200:
                    await asyncio.sleep(0.05)
        subscribers = [started[n] for n in range(SUBSCRIBERS)]
        with psycopg.connect(url, autocommit=True) as conn:
            # The stamper orders commits after they return: the writers' last ones may have no cursor yet, and
            # a head read now would stop the subscribers short of the table the books are compared with.
            stamp(conn)
            head = str(conn.execute("SELECT seq || ':' || id FROM supabase_push_head()").fetchone()[0])  # type: ignore[index]
        async with asyncio.timeout(30):
            while any(str(s.stats.cursor) != head for s in subscribers):
                await asyncio.sleep(0.05)
    finally:
        for subscriber in started.values():
            await subscriber.close()
    return books, subscribers


@pytest.fixture
def seeded(installed_url: str) -> Iterator[str]:
    with psycopg.connect(installed_url, autocommit=True) as conn:
        conn.execute("INSERT INTO positions (symbol, quantity) SELECT 'S' || n, n FROM generate_series(1, %s) n",
                     (SEED,))
    with stamping(installed_url):  # one stamper for the database, as any supabase-push process runs
        yield installed_url


async def test_twenty_subscribers_starting_from_a_snapshot_rebuild_the_book_over_sql(seeded: str) -> None:
    books, subscribers = await rebuild_books(seeded, lambda: SqlReader(seeded))
    final = table_now(seeded)
    for n, (book, subscriber) in enumerate(zip(books, subscribers, strict=True)):
        assert book.misfits == [], f"subscriber {n}: {book.misfits[:5]}"
        assert book.rows == final, f"subscriber {n}'s book differs from the table"
        assert book.snapshot_rows == subscriber.stats.snapshot_rows > 0
    skipped = sum(s.stats.snapshot_skipped for s in subscribers)
    print(f"snapshot then stream over SQL: {SUBSCRIBERS} books equal the table; {skipped} changes already in a "
          "snapshot were skipped")


async def test_twenty_subscribers_starting_from_a_snapshot_rebuild_the_book_over_postgrest(
        make_db: DatabaseFactory) -> None:
    url = make_db("empty")
    with psycopg.connect(url, autocommit=True) as conn:
        prepare(conn)
        conn.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO service_role")  # Supabase's default privileges
        conn.execute("INSERT INTO positions (symbol, quantity) SELECT 'S' || n, n FROM generate_series(1, %s) n",
                     (SEED,))
    key = tokens.mint("service_role", tokens.DEV_SECRET)
    with PostgREST(url, tokens.DEV_SECRET) as api, stamping(url):
        books, subscribers = await rebuild_books(url, lambda: RestReader(api.url, key))
    final = table_now(url)
    for n, (book, subscriber) in enumerate(zip(books, subscribers, strict=True)):
        assert book.misfits == [], f"subscriber {n}: {book.misfits[:5]}"
        assert book.rows == final, f"subscriber {n}'s book differs from the table"
        assert book.snapshot_rows == subscriber.stats.snapshot_rows > 0
    with psycopg.connect(url, autocommit=True) as conn:  # each copy was read in pages of 7, then dropped
        assert conn.execute("SELECT count(*) FROM supabase_push.snapshot_rows").fetchone() == (0,)


async def test_filters_apply_to_the_snapshot_and_a_cursor_file_resumes_after_it(seeded: str, tmp_path: Any) -> None:
    cursor_file = tmp_path / "c"
    subscriber = Subscriber.from_settings(Settings(database_url=seeded), topics=["position-updates"],
                                          start="snapshot", filters=["symbol=eq.S3"], cursor_store=cursor_file,
                                          transport="poll", poll_interval=0.05, stamp=False)
    async with subscriber:
        first = await asyncio.wait_for(anext(subscriber), 10)
        assert (first.op, first.record and first.record["symbol"], first.source) == ("SNAPSHOT", "S3", "snapshot")
        with psycopg.connect(seeded, autocommit=True) as conn:
            conn.execute("UPDATE positions SET quantity = 99 WHERE symbol = 'S3'")
        change = await asyncio.wait_for(anext(subscriber), 10)
        assert change.op == "UPDATE" and change.record and int(change.record["quantity"]) == 99
    assert subscriber.stats.snapshot_rows == SEED and subscriber.stats.filtered >= SEED - 1
    resumed = Subscriber.from_settings(Settings(database_url=seeded), topics=["position-updates"], start="snapshot",
                                       cursor_store=cursor_file, transport="poll", poll_interval=0.05, stamp=False)
    assert resumed.cursor.seq > 0, "a saved cursor wins over start='snapshot'"


def test_tail_from_snapshot(seeded: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "supabase_push", "tail", "--db-url", seeded, "--json", "--from",
                           "snapshot", "--topic", "position-updates", "--count", str(SEED), "--timeout", "20"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert {line["op"] for line in lines} == {"SNAPSHOT"} and len(lines) == SEED
    assert sorted(line["record"]["symbol"] for line in lines) == sorted(f"S{n}" for n in range(1, SEED + 1))


async def test_relay_streams_that_start_with_a_snapshot_rebuild_each_users_book(seeded: str) -> None:
    """Streams opened with ?start=snapshot while 8 writers write: snapshot frames (the rows this user may see),
    then every change after them; each stream's book equals the user's rows at the end. No frame carries an
    id before the changes the snapshot already held have gone by."""
    with psycopg.connect(seeded, autocommit=True) as conn:
        conn.execute("UPDATE positions SET user_id = %s WHERE id %% 2 = 0", (ALICE,))
    async with relay(seeded, policy=Policy(topics=["position-updates"])) as server:
        streams: list[tuple[str | None, SseStream]] = []
        async with contextlib.AsyncExitStack() as stack:
            with Writers(seeded):
                for n in range(10):
                    await asyncio.sleep(0.2)
                    who = ALICE if n % 2 else None
                    stream = SseStream(server.url, token(ALICE) if who else ADMIN, start="snapshot")
                    streams.append((who, await stack.enter_async_context(stream)))
                await asyncio.sleep(0.3)
            final = table_now(seeded)
            await asyncio.sleep(2)  # the relay pushes what the writers wrote last
            for who, stream in streams:
                book, frames = Book(), await stream.quiet(0.2)
                for frame in frames:
                    if frame.event in ("snapshot", "message"):
                        book.apply(ChangeEvent.model_validate_json(frame.data))
                misfits = book.misfits
                mine = {k: v for k, v in final.items() if who is None or v["user_id"] == who}
                assert misfits == [], misfits[:5]
                assert _shown(book.rows) == _shown(mine)
                kinds = [f.event for f in frames]
                assert kinds[0] == "snapshot-start" and "snapshot-end" in kinds
                assert all(f.id is None for f in frames[:kinds.index("snapshot-end") + 1])


def _shown(rows: dict[int, dict[str, Any]]) -> dict[int, tuple[str, str]]:
    return {k: (str(v["symbol"]), str(v["quantity"])) for k, v in rows.items()}


def test_a_change_committed_before_the_snapshot_but_stamped_after_is_named_to_skip(installed_url: str) -> None:
    """Nobody stamps here, so the snapshot's rows hold a change that gets its cursor only later."""
    with psycopg.connect(installed_url, autocommit=True) as conn:
        conn.execute("INSERT INTO positions (symbol, quantity) VALUES ('A', 1)")
        stamp(conn)
        conn.execute("UPDATE positions SET quantity = 2 WHERE symbol = 'A'")  # committed, no cursor yet
        conn.execute("INSERT INTO trades (symbol, side, quantity, price) VALUES ('T', 'buy', 1, 1)")  # another topic
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            seq, change_id, skip, tables, _ = conn.execute(
                "SELECT * FROM supabase_push_snapshot_start(ARRAY['position-updates'])").fetchone()  # type: ignore[misc]
            rows = conn.execute("SELECT quantity FROM positions").fetchall()
        stamp(conn)
        [first, update] = read_changes(conn, START, topics=["position-updates"])
    assert (seq, change_id) == (first.position.seq, first.id) and rows == [(2,)]
    assert skip == [update.id] and update.position > first.position, "the update is in the rows, and after the cursor"
    assert tables == [{"schema": "public", "table": "positions", "topic": "position-updates"}]


async def test_a_snapshot_cut_midway_is_read_again_after_a_reset_event(seeded: str) -> None:
    subscriber = Subscriber.from_settings(Settings(database_url=seeded), topics=["position-updates"],
                                          start="snapshot", transport="poll", stamp=False, page_size=5,
                                          queue_size=1, max_backoff=0.2)
    async with subscriber:
        got = [await asyncio.wait_for(anext(subscriber), 10) for _ in range(3)]
        with psycopg.connect(seeded, autocommit=True) as conn:  # the snapshot's connection, waiting for us
            killed = conn.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE "
                                  "datname = current_database() AND state = 'idle in transaction' AND "
                                  "pid <> pg_backend_pid()").fetchone()
        assert killed == (1,)
        book = Book()
        for event in got:
            book.apply(event)
        async with asyncio.timeout(20):
            while not (resets := [n for n, e in enumerate(got) if e.op == "SNAPSHOT" and e.record is None]) \
                    or len(got) - resets[0] - 1 < SEED:
                event = await anext(subscriber)
                got.append(event)
                book.apply(event)
    assert len(resets) == 1 and resets[0] >= 3, "one reset, after what the first attempt gave"
    assert book.rows == table_now(seeded) and subscriber.stats.read_failures >= 1


def test_a_snapshot_over_sql_is_read_with_the_readers_rights(seeded: str) -> None:
    with psycopg.connect(seeded, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS desk_reader")
        conn.execute("CREATE ROLE desk_reader LOGIN PASSWORD 'desk-reader-7'")
        conn.execute("GRANT USAGE ON SCHEMA supabase_push TO desk_reader")
        conn.execute("GRANT SELECT ON positions, supabase_push.change_log, supabase_push.commits, "
                     "supabase_push.retention, supabase_push.routes TO desk_reader")
        conn.execute("ALTER TABLE positions ENABLE ROW LEVEL SECURITY")
        conn.execute("CREATE POLICY only_s1 ON positions FOR SELECT TO desk_reader USING (symbol LIKE 'S1%')")
    url = psycopg.conninfo.make_conninfo(seeded, user="desk_reader", password="desk-reader-7")
    proc = subprocess.run([sys.executable, "-m", "supabase_push", "tail", "--db-url", url, "--json", "--from",
                           "snapshot", "--topic", "position-updates", "--count", "11", "--timeout", "20"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    symbols = sorted(json.loads(line)["record"]["symbol"] for line in proc.stdout.splitlines())
    assert symbols == sorted(["S1", *(f"S1{n}" for n in range(10))]), "S1 and S10-S19, the rows the policy shows"


async def test_a_snapshot_read_page_ahead_gives_each_row_once_and_a_reader_may_stop_at_any_page(seeded: str) -> None:
    """Each page is asked for before the one before it is built: every row comes once, in pages of the size
    asked (the last one less), and a reader that stops after any page leaves the connection ready for the next
    snapshot (the FETCH asked ahead ends with the transaction)."""
    from supabase_push.changelog import SnapshotStart, aread_snapshot

    async with await psycopg.AsyncConnection.connect(seeded, autocommit=True) as conn:
        start, *pages = [item async for item in aread_snapshot(conn, ["position-updates"], page_size=7)]
        assert isinstance(start, SnapshotStart)
        sizes = [len(page) for page in pages if isinstance(page, list)]
        assert sizes == [7] * (SEED // 7) + ([SEED % 7] if SEED % 7 else [])
        symbols = [e.record["symbol"] for page in pages if isinstance(page, list) for e in page if e.record]
        assert sorted(symbols) == sorted(f"S{n}" for n in range(1, SEED + 1))
        for stop_after in (1, 2):
            snapshot = aread_snapshot(conn, ["position-updates"], page_size=7)
            for _ in range(1 + stop_after):  # the start, then stop_after pages
                await anext(snapshot)
            await snapshot.aclose()
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        again = [item async for item in aread_snapshot(conn, ["position-updates"], page_size=SEED)]
        assert sorted(e.record["symbol"] for page in again[1:] if isinstance(page, list) for e in page
                      if e.record) == sorted(symbols)


async def test_a_snapshot_through_postgrest_read_page_ahead_gives_each_row_once_and_stops_cleanly(
        make_db: DatabaseFactory) -> None:
    """The same through PostgREST: each page asked for before the one before it is built, every row once, and a
    reader that stops after a page drops its copy (the page asked ahead is not wanted)."""
    url = make_db("empty")
    with psycopg.connect(url, autocommit=True) as conn:
        prepare(conn)
        conn.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO service_role")
        conn.execute("INSERT INTO positions (symbol, quantity) SELECT 'S' || n, n FROM generate_series(1, %s) n",
                     (SEED,))
    with PostgREST(url, tokens.DEV_SECRET) as api:
        reader = RestReader(api.url, tokens.mint("service_role", tokens.DEV_SECRET))
        try:
            _, *pages = [item async for item in reader.snapshot(["position-updates"], 7)]
            assert [len(page) for page in pages if isinstance(page, list)] == [7] * (SEED // 7) + [SEED % 7]
            assert sorted(e.record["symbol"] for page in pages if isinstance(page, list) for e in page
                          if e.record) == sorted(f"S{n}" for n in range(1, SEED + 1))
            snapshot = reader.snapshot(["position-updates"], 7)
            await anext(snapshot)
            await anext(snapshot)
            await snapshot.aclose()
        finally:
            await reader.close()
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM supabase_push.snapshot_rows").fetchone() == (0,)
