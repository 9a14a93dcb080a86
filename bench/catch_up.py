"""Reading the change log by cursor: catch-up time for a backlog, and one subscriber's ingest rate.

    python bench/catch_up.py [--runs 3] [--quick]      (all sections: python -m bench)

A backlog of changes (trades inserted 1,000 per transaction) is read from the start:
- catch-up: through SQL (`SqlReader`) and through a real PostgREST (`RestReader`, the
  official `postgrest` client), pages of 5,000; peers: keyset pagination of the bare
  table (`id > last ORDER BY id`) by SQL and through PostgREST's table endpoint;
- ingest: a `Subscriber` (polling, SQL) handing every event to `async for`, beside the
  raw `aread_changes` loop it is built on;
- snapshot: the same table's rows as a snapshot (what `start="snapshot"` reads first) over SQL
  (one transaction, a server-side cursor) and PostgREST (a copy made in one statement, read in
  pages), each page asked for before the last one is built, beside the keyset peers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import httpx
import psycopg
from _report import Ratio, Section, median
from _stack import Stack, run_alone, stack

from supabase_push import _json
from supabase_push.changelog import aexecute_read, aread_changes
from supabase_push.events import START, Cursor, Source
from supabase_push.local import tokens
from supabase_push.subscribe import Reader, RestReader, SqlReader, Subscriber

PAGE = 5000
TOPICS = ["trade-updates"]


def fill(dsn: str, changes: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for start in range(0, changes, 1000):
            conn.execute("INSERT INTO trades (symbol, side, quantity, price, order_id) "
                         "SELECT 'SPY', 'buy', 1, 600, 'o-' || n FROM generate_series(1, %s) n",
                         (min(1000, changes - start),))


def settle(dsn: str) -> None:
    """The backlog stamped, and every table read here vacuumed, as autovacuum leaves a table some time after
    a load: a read right after the load sets each row's hint bits as it goes, and whichever way read first,
    or before autovacuum came by in a long run, paid for it (the keyset peer took 0.21-0.43 s by run)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT supabase_push.stamp_v2(true)")
        conn.execute("VACUUM (ANALYZE) trades, supabase_push.change_log, supabase_push.commits")


async def read_all(reader: Reader, source: Source = "catch-up") -> int:
    """Every change, page by page; a catch-up's reader asks for each next page while it builds the last
    (a poll's does not)."""
    cursor, count = START, 0
    while page := await reader.read(cursor, PAGE, TOPICS, source):
        count += len(page)
        cursor = page[-1].cursor
    await reader.close()
    return count


async def keyset_sql(dsn: str) -> int:
    last, count = 0, 0
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        while rows := await (await conn.execute("SELECT * FROM trades WHERE id > %s ORDER BY id LIMIT %s",
                                                (last, PAGE))).fetchall():
            count += len(rows)
            last = rows[-1][0]
    return count


async def keyset_json_sql(dsn: str) -> int:
    """The keyset peer delivering what a change feed delivers: each row as JSON, parsed with exact numbers
    (the parser ours uses), and no change log, order or envelope."""
    last, count = 0, 0
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        while rows := await (await conn.execute("SELECT t.id, to_jsonb(t)::text FROM trades t WHERE t.id > %s "
                                                "ORDER BY t.id LIMIT %s", (last, PAGE))).fetchall():
            count += len(_json.loads_each([text for _, text in rows]))
            last = rows[-1][0]
    return count


async def log_rows_sql(dsn: str) -> int:
    """The change log's rows alone, as the SqlReader fetches them (its query, JSON left as text): the
    database's part of a read by cursor, with no event built."""
    cursor, count = START, 0
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        while rows := await (await aexecute_read(conn, cursor, limit=PAGE, topics=TOPICS)).fetchall():
            count += len(rows)
            cursor = Cursor(rows[-1][0], rows[-1][1])
    return count


async def keyset_rest(url: str, key: str) -> int:
    last, count = 0, 0
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
        while rows := (await http.get("/trades", params={"id": f"gt.{last}", "order": "id",
                                                         "limit": str(PAGE)})).json():
            count += len(rows)
            last = rows[-1]["id"]
    return count


async def snapshot_rows(reader: Reader) -> int:
    count = 0
    async for item in reader.snapshot(TOPICS, PAGE):
        if isinstance(item, list):
            count += len(item)
    await reader.close()
    return count


async def ingest_subscriber(dsn: str, changes: int) -> int:
    count = 0
    async with Subscriber(reader=SqlReader(dsn), topics=TOPICS, page_size=PAGE, poll_interval=0.05) as sub:
        async for _ in sub:
            count += 1
            if count >= changes:
                break
    return count


async def ingest_raw(dsn: str, changes: int) -> int:
    count, cursor = 0, START
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        while count < changes and (page := await aread_changes(conn, cursor, limit=PAGE, topics=TOPICS)):
            for _ in page:
                count += 1
            cursor = page[-1].cursor
    return count


async def timed(way: Callable[[], Awaitable[int]], expected: int) -> float:
    started = time.perf_counter()
    got = await way()
    if got < expected:
        raise RuntimeError(f"read {got} of {expected}")
    return time.perf_counter() - started


async def sections(env: Stack, *, quick: bool, runs: int) -> list[Section]:
    """On a cluster of its own (``env``'s is left alone): in a full run the local servers of the earlier
    sections stay up, and they decoded this section's 100k-change load while it was read, which took CPU
    from the reads, from ours (Python is the busier side) more than from the keyset peer (0.69 s against
    0.52-0.54 s alone)."""
    with stack() as own:
        return await _sections(own, quick=quick, runs=runs)


async def _sections(env: Stack, *, quick: bool, runs: int) -> list[Section]:
    changes = 10_000 if quick else 100_000
    dsn = env.database(realtime=True, broadcast="none")  # the realtime schema brings the roles PostgREST uses
    await asyncio.to_thread(fill, dsn, changes)
    await asyncio.to_thread(settle, dsn)
    rest = env.postgrest(dsn)
    key = tokens.mint("service_role", tokens.DEV_SECRET)
    ways: dict[str, Callable[[], Awaitable[int]]] = {
        "ours: change log by SQL (SqlReader)": lambda: read_all(SqlReader(dsn)),
        "ours: the same, nothing read ahead (as a poll reads)": lambda: read_all(SqlReader(dsn), "poll"),
        "peer: keyset over the table, SQL": lambda: keyset_sql(dsn),
        "peer: the same, each row as JSON, parsed": lambda: keyset_json_sql(dsn),
        "ours: the log's rows alone, SQL (no events)": lambda: log_rows_sql(dsn),
    }
    if rest:
        ways["ours: change log by PostgREST (RestReader)"] = lambda: read_all(RestReader(rest, key, timeout=60))
        ways["ours: the same by PostgREST, nothing read ahead"] = \
            lambda: read_all(RestReader(rest, key, timeout=60), "poll")
        ways["peer: keyset over the table, PostgREST"] = lambda: keyset_rest(rest, key)
    ingest: dict[str, Callable[[], Awaitable[int]]] = {
        "ours: Subscriber, async for": lambda: ingest_subscriber(dsn, changes),
        "peer: raw aread_changes loop": lambda: ingest_raw(dsn, changes),
    }
    snapshots: dict[str, Callable[[], Awaitable[int]]] = {
        "ours: snapshot by SQL (SqlReader)": lambda: snapshot_rows(SqlReader(dsn)),
    }
    if rest:
        snapshots["ours: snapshot by PostgREST (RestReader)"] = \
            lambda: snapshot_rows(RestReader(rest, key, timeout=120))
    times: dict[str, list[float]] = {name: [] for name in [*ways, *ingest, *snapshots]}
    for _ in range(runs):
        for name, way in {**ways, **ingest, **snapshots}.items():
            times[name].append(await timed(way, changes))

    catch_up = Section("catch_up", f"Catch-up: reading {changes:,} changes by cursor",
                       f"{changes:,} changes, pages of {PAGE:,}, from the start.", "seconds",
                       ["seconds", "changes/s"], runs=runs, plotted=["seconds"])
    for name in ways:
        seconds = median(times[name])
        catch_up.add(name, [seconds, changes / seconds])
    catch_up.ratios += against_keyset(catch_up, "change log", bool(rest), targets=("<= 2x", "<= 1.5x"))
    catch_up.ratios.append(Ratio("SQL: change log / keyset with each row as JSON, parsed (time)",
                                 catch_up.value("ours: change log by SQL (SqlReader)", "seconds")
                                 / catch_up.value("peer: the same, each row as JSON, parsed", "seconds")))
    catch_up.ratios.append(Ratio("SQL: the log's rows alone / bare table keyset (time)",
                                 catch_up.value("ours: the log's rows alone, SQL (no events)", "seconds")
                                 / catch_up.value("peer: keyset over the table, SQL", "seconds")))
    if not rest:
        catch_up.notes.append("PostgREST not measured: its binary comes from `npm ci` in tests/js.")
    catch_up.notes.append("The change log read joins each change to its transaction's commit stamp and builds the "
                          "event envelope; the peer reads the table's rows only, with no order or completeness "
                          "guarantee beyond its id. The row \"the log's rows alone\" is our query with no event built "
                          "(each change's row and old row as JSON text, the results in binary): the database's share "
                          "and the receive. The rest is Python: each change's rows parsed from JSON with exact "
                          "numbers, each transaction's commit time made a datetime once, and an event object built "
                          "per change, where the peer's driver hands out typed columns. A catch-up asks for the next "
                          "page as soon as it knows where this one ends (by SQL, from the received result's last "
                          "row; over PostgREST, from Content-Range and the body's last row) and builds this page's "
                          "events while the database works on the next: the rows 'nothing read ahead' read one page "
                          "after the other, as a poll does. A page's rows are fetched and built with the garbage "
                          "collector paused, so they are gone before it runs (when it could walk them, its "
                          "collections took a tenth of a catch-up). Before the first read the backlog is stamped "
                          "and the tables vacuumed, as autovacuum leaves them after a load.")
    catch_up.notes.append("The peer 'each row as JSON, parsed' is the bare keyset read delivering what a change feed "
                          "delivers: each row as JSON (`to_jsonb(t)::text`), parsed with exact numbers by the parser "
                          "ours uses, one page after the other. Most of the gap to the bare keyset read is that "
                          "delivery (the JSON text out of the database, then its parse), which any change feed "
                          "carries; the commit order, the envelope and the event objects cost the rest. A page of "
                          "5,000 costs the database about 12 ms (our read function 3.7, its rows' jsonb as text "
                          "5.5) and the client about 10 ms to build, overlapped, then about 4 ms to receive (a "
                          "psycopg loop round per 16 kB libpq read), which is not (measured apart).")

    rate = Section("ingest", "Subscriber ingest: events/s one subscriber hands out",
                   f"A backlog of {changes:,} changes, read and handed to `async for` one by one.", "events/s",
                   ["events/s"], runs=runs)
    for name in ingest:
        rate.add(name, [changes / median(times[name])])
    rate.ratios.append(Ratio("Subscriber / raw read loop", rate.value("ours: Subscriber, async for", "events/s")
                             / rate.value("peer: raw aread_changes loop", "events/s")))
    snapshot = Section("snapshot", f"Snapshot: the current {changes:,} rows of a table, then the stream",
                       f"{changes:,} rows of `trades` as SNAPSHOT events, read in one snapshot (what "
                       "`start=\"snapshot\"` reads first), beside the keyset read of the same rows.", "seconds",
                       ["seconds", "rows/s"], runs=runs, plotted=["seconds"])
    for name in [*snapshots, *(n for n in ways if n.startswith("peer"))]:
        seconds = median(times[name])
        snapshot.add(name, [seconds, changes / seconds])
    snapshot.ratios += against_keyset(snapshot, "snapshot", bool(rest))
    return [catch_up, rate, snapshot]


def against_keyset(section: Section, what: str, rest: bool,
                   targets: tuple[str | None, str | None] = (None, None)) -> list[Ratio]:
    """``what`` (the rows "ours: <what> by SQL/PostgREST") against the keyset peer of the same path, in time;
    ``targets``: the SQL one's and the PostgREST one's."""
    paths = [("SQL", "SqlReader", "SQL", targets[0]),
             *([("PostgREST", "RestReader", "PostgREST", targets[1])] if rest else [])]
    return [Ratio(f"{label}: {what} / bare table keyset (time)",
                  section.value(f"ours: {what} by {label} ({reader})", "seconds")
                  / section.value(f"peer: keyset over the table, {peer}", "seconds"), target)
            for label, reader, peer, target in paths]


if __name__ == "__main__":
    run_alone(sections, __doc__, "10,000 changes, 1 run")
