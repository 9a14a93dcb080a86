"""A catch-up reads its next page while it builds this one (``SqlReader``, and ``RestReader`` through a real
PostgREST): what it hands out is still the change log, exactly once and in order, with writers committing
all along; a read from anywhere else, a poll and a close leave nothing behind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from supabase_push.events import Cursor
from supabase_push.local import tokens
from supabase_push.subscribe import Reader, RestReader, SqlReader, read_pages

from .postgrest import PostgREST
from .subscriber_helpers import TOPICS, logged, write


@pytest.fixture(params=["sql", "rest"])
async def reader(request: pytest.FixtureRequest, realtime_db: str) -> AsyncIterator[Reader]:
    if request.param == "sql":
        sql = SqlReader(realtime_db)
        yield sql
        await sql.close()
        return
    with PostgREST(realtime_db, tokens.DEV_SECRET) as api:
        rest = RestReader(api.url, tokens.mint("service_role", tokens.DEV_SECRET))
        yield rest
        await rest.close()


def count_pages_read_ahead(reader: Reader) -> list[int]:
    """How many reads took the page read ahead for them (a test that the way under test was taken)."""
    ahead: Any = reader._ahead  # type: ignore[attr-defined]
    take, hits = ahead.take, [0]

    def counting(*args: Any) -> Any:
        task = take(*args)
        hits[0] += task is not None
        return task

    ahead.take = counting
    return hits


async def test_a_catch_up_reading_ahead_hands_out_the_log_exactly_once_in_order(reader: Reader,
                                                                               realtime_db: str) -> None:
    """A backlog of 600 changes (15 full pages: each of the 14 after the first was read ahead), then 600 more
    committed while the catch-up runs (pages read ahead whenever one comes back full: how many depends on how
    fast the reader keeps up)."""
    history = logged(realtime_db)
    start = Cursor.parse(history[-1]) if history else Cursor(0, 0)
    hits = count_pages_read_ahead(reader)
    await write(realtime_db, changes=600, pause=0)
    writing = asyncio.create_task(write(realtime_db, changes=600, pause=0.01))
    got: list[str] = []
    after = start
    while True:
        done = writing.done()  # before the pass: a pass after the last commit reads it all
        async for page in read_pages(reader, after, TOPICS, page_size=40):
            got += [str(event.cursor) for event in page]
            after = page[-1].cursor if page else after
        if done:
            break
        await asyncio.sleep(0.05)
    await writing
    assert len(set(got)) == len(got), "a change was handed out twice"
    assert got == logged(realtime_db)[len(history):]
    assert len(got) == 1200
    assert hits[0] >= 600 // 40 - 1, f"only {hits[0]} pages were read ahead"


async def test_a_read_from_elsewhere_leaves_the_page_read_ahead_unused(reader: Reader, realtime_db: str) -> None:
    await write(realtime_db, changes=60, pause=0)
    history = logged(realtime_db)
    first = Cursor.parse(history[-60])
    hits = count_pages_read_ahead(reader)
    page = await reader.read(first, 20, TOPICS, "catch-up")  # full: the next is read ahead
    again = await reader.read(first, 20, TOPICS, "catch-up")  # not its continuation
    assert [str(e.cursor) for e in again] == [str(e.cursor) for e in page] == history[-59:-39]
    following = await reader.read(again[-1].cursor, 20, TOPICS, "catch-up")  # read ahead again, and taken
    assert [str(e.cursor) for e in following] == history[-39:-19]
    assert hits[0] == 1
    await reader.read(following[-1].cursor, 20, TOPICS, "catch-up")  # leaves one pending: close drops it
    await reader.close()


@pytest.mark.parametrize("source", ["poll", "listen", "realtime"])
async def test_only_a_catch_up_reads_ahead(reader: Reader, realtime_db: str, source: Any) -> None:
    await write(realtime_db, changes=30, pause=0)
    history = logged(realtime_db)
    page = await reader.read(Cursor.parse(history[-30]), 10, TOPICS, source)
    assert len(page) == 10
    assert reader._ahead._task is None  # type: ignore[attr-defined]
