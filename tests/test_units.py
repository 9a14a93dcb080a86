"""Pure logic: no database needed."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

import supabase_push
from supabase_push import schema
from supabase_push._backoff import Backoff
from supabase_push._http import retry_after
from supabase_push._sql import INSTALL, SCHEMA_VERSION, read_sql
from supabase_push.db import describe_dsn, redact_dsn
from supabase_push.errors import ConfigError
from supabase_push.events import ChangeEvent, Cursor


def test_cursor_round_trip_and_order() -> None:
    assert Cursor.parse("42:1007") == Cursor(42, 1007)
    assert str(Cursor(42, 1007)) == "42:1007"
    assert Cursor(2, 1) > Cursor(1, 99)
    for bad in ("", "42", "a:b", "1:-2", "1:2:3"):
        with pytest.raises(ValueError, match="not a cursor"):
            Cursor.parse(bad)


def test_parse_route() -> None:
    assert schema.parse_route("positions=position-updates") == schema.Route(
        "positions", "position-updates")
    assert schema.parse_route('public."a=b"=topic') == schema.Route('public."a=b"', "topic")
    for bad in ("positions", "=topic", "positions="):
        with pytest.raises(ConfigError, match="bad route"):
            schema.parse_route(bad)


@pytest.mark.parametrize("dsn, shown", [
    ("postgresql://me:s3cret@db.example.com:5432/app?sslmode=require&password=x",
     "postgresql://me@db.example.com:5432/app"),
    ("postgres://db.example.com/app", "postgres://db.example.com/app"),
    ("host=db user=me password=s3cret dbname=app", "host=db user=me password=*** dbname=app"),
    ("host=db password='s3 cret' dbname=app", "host=db password=*** dbname=app"),
    ("postgresql://me:s3cret@[oops/app", "postgresql://me@[oops/app"),
])
def test_secrets_never_shown(dsn: str, shown: str) -> None:
    assert redact_dsn(dsn) == shown
    assert "s3" not in describe_dsn(dsn)


def test_apply_sql_quotes_settings() -> None:
    script = schema.apply_sql([schema.Route("trades", "it's")])
    routes = re.search(r"set_config\('supabase_push.routes', '(.*)', false\)", script)
    assert routes is not None
    assert json.loads(routes.group(1).replace("''", "'")) == [{"table": "trades", "topic": "it's"}]
    with pytest.raises(ConfigError):
        schema.apply_sql(broadcast_mode="carrier-pigeon")  # type: ignore[arg-type]


def test_schema_version_matches_the_sql_file() -> None:
    text = read_sql(INSTALL)
    assert f"(schema version {SCHEMA_VERSION})" in text
    assert f"VALUES ({SCHEMA_VERSION}, supabase_push.fingerprint_v1()" in text


def test_event_envelope_parses() -> None:
    event = ChangeEvent.model_validate_json(json.dumps({
        "id": 7, "cursor": "3:7", "topic": "trade-updates", "schema": "public", "table": "trades",
        "op": "INSERT", "record": {"id": 1}, "old_record": None,
        "commit_ts": "2026-11-21T13:25:14.490448+00:00"}))
    assert event.position == Cursor(3, 7) and event.schema_name == "public"
    assert not event.truncated and event.source is None


def test_public_api_is_importable() -> None:
    assert len(set(supabase_push.__all__)) == len(supabase_push.__all__)
    for name in supabase_push.__all__:
        assert hasattr(supabase_push, name)


@pytest.mark.parametrize(("header", "seconds"), [
    ("120", 120.0), ("1.5", 1.5), ("-5", 0.0), (None, None), ("", None), ("soon", None), ("nan", None),
    ("inf", None), ("Thu, 03 Dec 2026 10:00:30 GMT", 30.0), ("Thu, 03 Dec 2026 09:59:00 GMT", 0.0),
])
def test_retry_after_reads_seconds_and_http_dates(header: str | None, seconds: float | None) -> None:
    """One reading of Retry-After for every client (Realtime REST, PostgREST, the sinks): RFC 9110 allows
    delay-seconds or an HTTP date; a past date is now, and anything else falls back to our backoff."""
    assert retry_after(header, now=datetime(2026, 12, 3, 10, 0, 0, tzinfo=UTC)) == seconds


@pytest.mark.parametrize("op", ["INSERT", "EVENT", "DELETE"])
def test_an_event_read_from_the_log_is_the_event_pydantic_builds(op: str) -> None:
    """The readers' fast construction (no validation) against the validating one: equal, and the same
    repr, dump and copy, whatever pydantic version is installed."""
    from supabase_push.changelog import _event, events_of_rows, row_to_event

    at = datetime(2026, 12, 3, 17, 0, 0, 123456, tzinfo=UTC)
    fast = _event(7, 42, "trade-updates", "public", "trades", op, '{"id": 1, "price": 600.5}',  # type: ignore[arg-type]
                  None, at, source="catch-up")
    checked = ChangeEvent.model_validate({
        "id": 42, "cursor": "7:42", "topic": "trade-updates", "schema": "public",
        "table": "" if op == "EVENT" else "trades", "event": "trades" if op == "EVENT" else None, "op": op,
        "record": {"id": 1, "price": 600.5}, "old_record": None, "commit_ts": at, "source": "catch-up"})
    sql_row, again = events_of_rows([  # what a read by SQL builds for the rows it fetches
        (7, 42, "trade-updates", "public", "trades", op, '{"id": 1, "price": 600.5}', None, at),
        (7, 43, "trade-updates", "public", "trades", op, "{}", None, at)], "catch-up")
    for built in (fast, sql_row):
        assert built == checked and repr(built) == repr(checked)
        assert built.model_dump_json(by_alias=True) == checked.model_dump_json(by_alias=True)
        assert built.model_fields_set == checked.model_fields_set
        assert built.model_copy(update={"source": "listen"}) == checked.model_copy(update={"source": "listen"})
    # Events of a read share one fields set: pydantic copies it before a model_copy(update=...) adds to it.
    given = set(sql_row.model_fields_set)
    changed = sql_row.model_copy(update={"truncated": True})
    assert "truncated" in changed.model_fields_set and "truncated" not in sql_row.model_fields_set
    assert sql_row.model_fields_set == again.model_fields_set == given
    assert fast.position == Cursor(7, 42)
    with pytest.raises(ValidationError):
        fast.id = 1
    # PostgREST's JSON: the same event, its timestamp given as text
    rest = row_to_event({"seq": 7, "id": 42, "topic": "trade-updates", "schema_name": "public",
                         "table_name": "trades", "op": op, "record": {"id": 1, "price": 600.5},
                         "old_record": None, "committed_at": "2026-12-03T17:00:00.123456+00:00"}, "catch-up")
    assert rest == checked


def test_a_read_by_sql_decodes_a_row_once() -> None:
    """A record whose JSON is a string holding an object is refused, not decoded a second time into a row."""
    from supabase_push.changelog import events_of_rows

    with pytest.raises(ValidationError):
        events_of_rows([(7, 42, "t", "public", "trades", "INSERT", json.dumps('{"a": 1}'), None,
                  datetime(2026, 12, 3, 17, tzinfo=UTC))], "catch-up")


@pytest.mark.parametrize(("column", "value"), [("op", "MERGE"), ("record", "[1, 2]"), ("id", "x"),
                                               ("committed_at", "yesterday")])
def test_a_row_of_the_wrong_shape_is_refused_as_before(column: str, value: str) -> None:
    from supabase_push.changelog import events_of_rows, row_to_event

    row = {"seq": 7, "id": 42, "topic": "t", "schema_name": "public", "table_name": "trades", "op": "INSERT",
           "record": None, "old_record": None, "committed_at": "2026-12-03T17:00:00+00:00",
           column: json.loads(value) if column == "record" else value}
    with pytest.raises(ValidationError):
        row_to_event(row, "catch-up")
    if column in ("op", "record"):  # what a read by SQL can meet (its other columns have SQL types)
        record = None if row["record"] is None else json.dumps(row["record"])
        values = (7, 42, "t", "public", "trades", row["op"], record, None, datetime(2026, 12, 3, 17, tzinfo=UTC))
        with pytest.raises(ValidationError):
            events_of_rows([values], "catch-up")


def test_a_page_of_rows_parses_at_once_and_keeps_every_number_exact() -> None:
    """One parse for a page of rows where no number could be rounded; a page holding one that could (or any
    text orjson refuses) is parsed row by row, each row as exact as alone."""
    from decimal import Decimal

    from supabase_push._json import loads_each

    assert loads_each([]) == []
    assert loads_each(['{"a": 1.5}', "null", '{"b": [1, "x"]}']) == [{"a": 1.5}, None, {"b": [1, "x"]}]
    long = '{"q": 0.12345678901234567890, "n": 123456789012345678901234567890}'
    assert loads_each(['{"a": 1}', long]) == [{"a": 1}, {"q": Decimal("0.12345678901234567890"),
                                                          "n": 123456789012345678901234567890}]
    with pytest.raises(ValueError, match="Extra data"):  # two values in one text do not shift the others
        loads_each(['{"a": 1}, {"b": 2}', '{"c": 3}'])
    with pytest.raises(ValueError):
        loads_each(['{"a": NaN}'])


@pytest.mark.parametrize("collector_on", [True, False])
def test_building_a_page_leaves_the_garbage_collector_as_it_found_it(collector_on: bool) -> None:
    import gc

    from supabase_push.changelog import events_of_rows, rows_to_events

    at = datetime(2026, 12, 3, 17, tzinfo=UTC)
    good = (7, 42, "t", "public", "trades", "INSERT", "{}", None, at)
    was = gc.isenabled()
    try:
        if not collector_on:
            gc.disable()
        assert len(events_of_rows([good, good], "catch-up")) == 2
        assert gc.isenabled() is collector_on
        with pytest.raises(ValidationError):
            events_of_rows([good, (7, 43, "t", "public", "trades", "MERGE", "{}", None, at)], "catch-up")
        assert gc.isenabled() is collector_on
        with pytest.raises(ValidationError):
            rows_to_events([{"seq": 7, "id": 42, "topic": "t", "schema_name": "public", "table_name": "trades",
                             "op": "INSERT", "record": None, "old_record": None, "committed_at": "soon"}], "poll")
        assert gc.isenabled() is collector_on
    finally:
        (gc.enable if was else gc.disable)()


def test_a_page_from_postgrest_reads_each_commit_time_as_its_own() -> None:
    from supabase_push.changelog import rows_to_events

    def row(change_id: int, at: str) -> dict[str, object]:
        return {"seq": change_id // 10, "id": change_id, "topic": "t", "schema_name": "public",
                "table_name": "trades", "op": "INSERT", "record": {"id": change_id}, "old_record": None,
                "committed_at": at}

    first, second = "2026-12-03T17:00:00.5+00:00", "2026-12-03T17:00:01+01:00"
    events = rows_to_events([row(10, first), row(11, first), row(20, second), row(30, first)], "catch-up")
    assert [event.commit_ts for event in events] == [datetime.fromisoformat(at)
                                                      for at in (first, first, second, first)]
    assert [event.cursor for event in events] == [Cursor(1, 10), Cursor(1, 11), Cursor(2, 20), Cursor(3, 30)]


def test_every_retry_loop_waits_by_one_rule_growing_to_its_cap_with_jitter() -> None:
    backoff = Backoff(0.1, 1.0)
    assert [backoff.ceiling(n) for n in (0, 1, 2, 3, 4, 5, 100_000)] == [0.1, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    for failures in range(1, 12):
        waits = {backoff.delay(failures) for _ in range(200)}
        ceiling = backoff.ceiling(failures)
        assert all(ceiling / 2 <= wait <= ceiling for wait in waits)
        assert len(waits) > 100  # jittered: clients that failed together do not come back together


def test_a_backend_name_is_checked_in_one_place_for_the_environment_and_the_cli() -> None:
    from supabase_push.config import check_backend

    assert check_backend("REST") == "rest"
    with pytest.raises(ConfigError, match="--backend='pigeon' is not a backend") as refused:
        check_backend("pigeon", "--backend")
    assert refused.value.hint is not None and "websocket" in refused.value.hint
    with pytest.raises(ConfigError, match="SUPABASE_PUSH_BROADCAST='pigeon' is not a backend"):
        supabase_push.Settings.from_env({"SUPABASE_PUSH_BROADCAST": "pigeon"})


def test_a_page_of_snapshot_rows_is_the_events_pydantic_builds() -> None:
    from supabase_push.changelog import SnapshotStart

    start = SnapshotStart(Cursor(7, 42), frozenset(), datetime(2026, 12, 3, 17, tzinfo=UTC))
    records = [{"id": 1, "price": 600.5}, None, {}]
    page = start.events("trade-updates", "public", "trades", records)
    checked = [start.event("trade-updates", "public", "trades", record) for record in records]
    assert page == checked and [repr(e) for e in page] == [repr(e) for e in checked]
    assert [e.model_fields_set for e in page] == [e.model_fields_set for e in checked]
    assert [e.model_dump_json(by_alias=True) for e in page] == [e.model_dump_json(by_alias=True) for e in checked]
    with pytest.raises(ValidationError):  # a row that is not an object is refused, as one at a time
        start.events("trade-updates", "public", "trades", [{"id": 1}, [1, 2]])
