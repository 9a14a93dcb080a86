"""The subscriber's pure logic: the sequencer's verdicts, row filters, the cursor file, token lifetimes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from supabase_push.errors import ConfigError, SupabasePushError
from supabase_push.events import START, ChangeEvent, Cursor
from supabase_push.local import tokens
from supabase_push.subscribe import FileCursorStore, RowFilter, Sequencer, Verdict, read_pages
from supabase_push.subscribe.realtime import seconds_left
from supabase_push.subscribe.transports import Hint, parse_push


def push(cursor: str, topic: str = "trade-updates", prev: dict[str, str] | None = None, **row: Any) -> ChangeEvent:
    return ChangeEvent(id=int(cursor.split(":")[1]), cursor=Cursor.parse(cursor), topic=topic, schema="public",
                       table="trades", op="INSERT", record=row or {"id": 1}, commit_ts=datetime.now(UTC), prev=prev)


def test_a_push_that_follows_the_cursor_is_delivered() -> None:
    seq = Sequencer(["trade-updates", "position-updates"], Cursor(5, 10))
    assert seq.judge(push("6:11", prev={"trade-updates": "5:10", "position-updates": "4:9"})) is Verdict.DELIVER
    # a change on a topic it does not follow came in between: nothing missed
    assert seq.judge(push("6:11", prev={"trade-updates": "5:10", "position-updates": "5:10", "x": "6:10"})) \
        is Verdict.DELIVER
    # a position change (followed) came in between and never arrived: a gap
    assert seq.judge(push("7:12", prev={"trade-updates": "5:10", "position-updates": "6:11"})) is Verdict.READ


def test_topics_you_do_not_follow_are_ignored_in_prev() -> None:
    seq = Sequencer(["trade-updates"], Cursor(5, 10))
    assert seq.judge(push("9:20", prev={"trade-updates": "5:10", "position-updates": "8:19"})) is Verdict.DELIVER


def test_duplicates_gaps_and_malformed_pushes() -> None:
    seq = Sequencer(["trade-updates"], Cursor(5, 10))
    assert seq.judge(push("5:10", prev={})) is Verdict.DUPLICATE
    assert seq.judge(push("4:1", prev={})) is Verdict.DUPLICATE
    assert seq.judge(push("6:11", prev=None)) is Verdict.READ
    assert seq.judge(push("6:11", prev={"trade-updates": "garbage"})) is Verdict.READ
    assert seq.judge(push("6:11", topic="other", prev={"trade-updates": "5:10"})) is Verdict.READ
    first = Sequencer(["trade-updates"])
    assert first.judge(push("1:1", prev={})) is Verdict.DELIVER  # the first change ever


def test_a_push_parsed_by_a_client_with_floats_is_only_a_hint() -> None:
    """The official Realtime client parses numbers as doubles: 1.000000000000000001 arrives as 1.0,
    so a row holding a float is read by cursor; text (NOTIFY) is parsed here, exactly."""
    envelope = {"id": 11, "cursor": "6:11", "topic": "trade-updates", "schema": "public", "table": "trades",
                "op": "INSERT", "commit_ts": "2026-12-01T00:00:00Z", "prev": {}}
    with_float = {**envelope, "record": {"id": 1, "price": 1.0}}
    hint = parse_push(with_float)
    assert isinstance(hint, Hint) and hint.event.cursor == Cursor(6, 11)
    assert isinstance(parse_push({**envelope, "old_record": {"q": [float("inf")]}}), Hint)
    assert isinstance(parse_push({**envelope, "record": {"id": 1, "price": "1.5", "n": 10**30}}), ChangeEvent)
    exact = parse_push(json.dumps(envelope)[:-1] + ', "record": {"price": 1.000000000000000001}}')
    assert isinstance(exact, ChangeEvent) and exact.record is not None
    assert str(exact.record["price"]) == "1.000000000000000001"


def test_the_cursor_never_moves_back() -> None:
    seq = Sequencer(["trade-updates"], Cursor(5, 10))
    seq.advance(push("6:11"))
    with pytest.raises(ValueError, match="move back"):
        seq.advance(push("6:11"))
    assert [e.cursor for e in seq.fresh([push("5:9"), push("6:11"), push("7:1")])] == [Cursor(7, 1)]


@pytest.mark.parametrize(("text", "row", "passes"), [
    ("symbol=eq.SPY", {"symbol": "SPY"}, True),
    ("symbol=eq.SPY", {"symbol": "QQQ"}, False),
    ("user_id=eq.42", {"user_id": 42}, True),
    ("user_id=gt.41", {"user_id": 42}, True),
    ("price=lte.1.5", {"price": 1.5}, True),
    ("side=neq.buy", {"side": "sell"}, True),
    ("status=in.(open,filled)", {"status": "filled"}, True),
    ("status=in.(open,filled)", {"status": "cancelled"}, False),
    ("user_id=eq.42", {"other": 42}, False),
    ("user_id=eq.42", {"user_id": None}, False),
    ("user_id=lt.abc", {"user_id": 42}, False),
])
def test_row_filters(text: str, row: dict[str, Any], passes: bool) -> None:
    assert RowFilter.parse(text).matches(push("1:1", **row)) is passes


@pytest.mark.parametrize("text", ["symbol", "symbol=SPY", "=eq.SPY", "symbol=like.SP%", "status=in.open"])
def test_bad_row_filters_are_config_errors(text: str) -> None:
    with pytest.raises(ConfigError, match="not a row filter"):
        RowFilter.parse(text)


def test_cursor_file(tmp_path: Path) -> None:
    store = FileCursorStore(tmp_path / "c")
    assert store.load() is None
    store.save(Cursor(3, 7))
    assert store.load() == Cursor(3, 7) and (tmp_path / "c").read_text() == "3:7"
    (tmp_path / "c").write_text("yesterday")
    with pytest.raises(ConfigError, match="does not hold a usable cursor"):
        store.load()
    store.close()


def test_a_cursor_file_has_one_owner_at_a_time(tmp_path: Path) -> None:
    """Regression: two stores on one file shared a .tmp name, os.replace failed (14,010 of 40,000 saves)."""
    first, second = FileCursorStore(tmp_path / "c"), FileCursorStore(tmp_path / "c")
    first.save(Cursor(1, 1))
    with pytest.raises(ConfigError, match="in use by another subscriber"):
        second.save(Cursor(2, 2))
    with pytest.raises(ConfigError, match="in use by another subscriber"):
        second.claim()
    assert first.load() == Cursor(1, 1)
    first.close()
    second.save(Cursor(2, 2))
    assert first.load() == Cursor(2, 2)
    second.close()


def test_a_cursor_that_cannot_be_saved_says_why(tmp_path: Path) -> None:
    store = FileCursorStore(tmp_path / "missing-dir" / "c")
    with pytest.raises(SupabasePushError, match=r"cannot save the cursor to .*missing-dir"):
        store.save(Cursor(1, 1))
    store.close()


@pytest.mark.parametrize("text", ["99999999999999999999999:1", "1:9223372036854775808", "\u0661:2"])
def test_a_cursor_past_bigint_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="cursor"):
        Cursor.parse(text)
    assert Cursor.parse("9223372036854775807:1") == Cursor(2**63 - 1, 1)


def test_token_lifetime() -> None:
    left = seconds_left(tokens.mint("anon", tokens.DEV_SECRET, ttl=100))
    assert left is not None and 98 < left <= 100
    assert seconds_left("sb_publishable_abc") is None and seconds_left("a.b.c") is None


async def test_a_token_that_is_never_renewed_ends_the_refresh_loop() -> None:
    """A fixed token past its expiry: one failure, not set_auth twice a second for ever."""
    import asyncio

    from supabase_push.subscribe import RealtimeTransport

    token = tokens.mint("service_role", "s" * 32, ttl=1)
    transport = RealtimeTransport("http://127.0.0.1:9", "key", access_token=token)

    class Client:  # what _refresh touches of the official client
        calls = 0

        async def set_auth(self, _token: str) -> None:
            Client.calls += 1

    failures: list[str] = []
    refresh = transport._refresh(Client(), token, failures.append)  # type: ignore[arg-type]
    await asyncio.wait_for(refresh, 5)  # before the fix it never returned
    assert failures == ["the access token expired and its source gave no fresh one"]
    assert Client.calls <= 1  # handed over once more if it had not quite expired at the first refresh


class ListReader:
    """A log held in a list: the paging rule alone (the readers themselves are tested against Postgres)."""

    def __init__(self, cursors: list[str]) -> None:
        self.log = [push(c) for c in cursors]
        self.reads: list[Cursor] = []

    async def read(self, after: Cursor, limit: int, topics: Any, source: Any) -> list[ChangeEvent]:
        self.reads.append(after)
        return [e for e in self.log if e.position > after][:limit]


@pytest.mark.parametrize(("until", "pages", "reads"), [
    (None, [["1:1", "1:2"], ["2:3", "3:4"], ["3:5"]], ["0:0", "1:2", "3:4"]),
    (Cursor(3, 4), [["1:1", "1:2"], ["2:3", "3:4"], []], ["0:0", "1:2", "3:4"]),
    (Cursor(2, 3), [["1:1", "1:2"], ["2:3"]], ["0:0", "1:2"]),
    (Cursor(0, 9), [[]], ["0:0"]),
])
async def test_a_range_of_the_log_is_read_page_by_page_from_each_page_end(
        until: Cursor | None, pages: list[list[str]], reads: list[str]) -> None:
    reader = ListReader(["1:1", "1:2", "2:3", "3:4", "3:5"])
    got = [[str(e.cursor) for e in page] async for page in read_pages(reader, START, ["trade-updates"],  # type: ignore[arg-type]
                                                                 page_size=2, until=until)]
    assert got == pages and reader.reads == [Cursor.parse(r) for r in reads]


async def test_an_empty_log_is_one_empty_page() -> None:
    reader = ListReader([])
    assert [page async for page in read_pages(reader, START, ["t"], page_size=2)] == [[]]  # type: ignore[arg-type]


def test_a_full_page_from_postgrest_names_its_last_cursor_before_it_is_parsed() -> None:
    """The cursor a catch-up reads ahead from, taken from Content-Range and the body's last row; None (parse
    the page first) wherever either does not say so plainly. A wrong guess could only waste a read."""
    import httpx

    from supabase_push.subscribe.readers import _last_cursor

    def row(seq: int, change_id: int, record: str = '{"id": 1}') -> str:
        return (f'{{"seq":{seq},"id":{change_id},"topic":"t","schema_name":"public","table_name":"trades",'
                f'"op":"INSERT","record":{record},"old_record":null,"committed_at":"2026-12-04T21:28:00+00:00"}}')

    def page(rows: list[str], content_range: str | None = "0-{last}/*") -> httpx.Response:
        headers = {} if content_range is None else {"content-range": content_range.format(last=len(rows) - 1)}
        return httpx.Response(200, headers=headers, content=("[" + ", \n ".join(rows) + "]").encode())

    full = [row(1, 5), row(1, 6), row(2, 9)]
    assert _last_cursor(page(full), 3) == Cursor(2, 9)
    assert _last_cursor(page(full[:1]), 1) == Cursor(1, 5)
    assert _last_cursor(page(full), 4) is None  # a short page: the catch-up ends here
    assert _last_cursor(page(full, None), 3) is None
    assert _last_cursor(page(full, "*/0"), 3) is None
    # A row's own text cannot pass for a row: a string escapes its quotes, jsonb writes ": " with a space.
    tricky = [row(1, 5), row(2, 9, '{"note": "{\\"seq\\":7,\\"id\\":8}", "inner": {"seq": 3, "id": 4}}')]
    assert _last_cursor(page(tricky), 2) == Cursor(2, 9)
    assert _last_cursor(httpx.Response(200, headers={"content-range": "0-0/*"}, content=b'[{"seq":1,"id":'), 1) is None
    assert _last_cursor(httpx.Response(200, headers={"content-range": "0-0/*"},
                                       content=b'[{"seq":"1","id":2}]'), 1) is None
