"""Pure logic of the relay: SSE framing and parsing, who sees what, the events/s window."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from supabase_push.events import ChangeEvent, Cursor
from supabase_push.relay import Policy, Principal, Refused, SseParser, sse
from supabase_push.relay.hub import Rate


def test_frames_round_trip_through_the_parser_in_any_chunking() -> None:
    stream = (sse.comment("hello") + sse.retry(1000) + sse.frame('{"a": 1}', id="3:7")
              + sse.frame("line one\nline two", id="3:8", event="gap") + sse.comment("heartbeat")
              + sse.frame("no id"))
    for size in (1, 3, 7, len(stream)):
        parser = SseParser()
        events = [e for i in range(0, len(stream), size) for e in parser.feed(stream[i:i + size])]
        assert [(e.event, e.id, e.data) for e in events] == [
            ("message", "3:7", '{"a": 1}'), ("gap", "3:8", "line one\nline two"), ("message", "3:8", "no id")]
        assert parser.comments == 2 and parser.retry_ms == 1000 and parser.last_id == "3:8"


def test_the_parser_follows_the_eventsource_rules() -> None:
    parser = SseParser()
    events = parser.feed("data:no space\r\nid: 1\0x\r\n\r\ndata\n\nevent: x\n\nretry: soon\ndata: y\n\n")
    assert [(e.data, e.id) for e in events] == [("no space", None), ("", None), ("y", None)]
    assert parser.retry_ms is None  # ids with NUL and non-numeric retry are ignored


def test_fields_may_not_span_lines() -> None:
    with pytest.raises(ValueError, match="span lines"):
        sse.frame("x", id="1\n2")


def change(topic: str = "trade-updates", op: str = "INSERT", **row: Any) -> ChangeEvent:
    return ChangeEvent(id=1, cursor="1:1", topic=topic, schema="public", table="t", op=op,  # type: ignore[arg-type]
                       record=None if op == "DELETE" else row, old_record=row if op == "DELETE" else None,
                       commit_ts=datetime(2026, 12, 1, tzinfo=UTC))


POLICY = Policy(topics=["trade-updates", "prices", "signals"], shared_topics=["prices"],
                topic_tiers={"signals": ["pro", "elite"]})
ALICE = Principal("alice", tier="free")
PRO = Principal("bob", tier="pro")
ADMIN = Principal("service_role", admin=True)


def test_rows_by_owner_shared_topics_and_the_admin() -> None:
    assert POLICY.sees(ALICE, change(user_id="alice"))
    assert not POLICY.sees(ALICE, change(user_id="bob"))
    assert not POLICY.sees(ALICE, change(symbol="no owner"))
    assert POLICY.sees(ALICE, change("trade-updates", "DELETE", user_id="alice"))  # the old row decides
    assert POLICY.sees(ALICE, change("prices", user_id="bob"))
    assert POLICY.sees(ADMIN, change(user_id="bob"))
    assert POLICY.sees(ALICE, change("*", "GAP"))
    assert POLICY.owner_of(change(user_id=42)) == "42"


def test_an_owner_change_is_a_removal_to_one_and_an_arrival_to_the_other() -> None:
    """Regression: B received the UPDATE with A's old row; A received nothing and kept showing the row."""
    moved = ChangeEvent(id=2, cursor=Cursor(2, 2), topic="trade-updates", schema="public", table="positions",
                        op="UPDATE", record={"id": 7, "user_id": "bob", "symbol": "NEW"},
                        old_record={"id": 7, "user_id": "alice", "symbol": "OLD"}, commit_ts=datetime.now(UTC))
    to_alice, to_bob = POLICY.view(ALICE, moved), POLICY.view(PRO, moved)
    assert to_alice is not None and to_alice.op == "DELETE" and to_alice.record is None
    assert to_alice.old_record == {"id": 7, "user_id": "alice", "symbol": "OLD"}
    assert to_bob is not None and to_bob.op == "INSERT" and to_bob.old_record is None
    assert to_bob.record == {"id": 7, "user_id": "bob", "symbol": "NEW"}
    assert POLICY.view(Principal("carol"), moved) is None
    assert POLICY.view(ADMIN, moved) is moved
    assert POLICY.owners_of(moved) == {"alice", "bob"}
    same = moved.model_copy(update={"old_record": {"id": 7, "user_id": "bob", "symbol": "OLD"}})
    assert POLICY.view(PRO, same) is same and POLICY.view(ALICE, same) is None


def test_topics_by_tier() -> None:
    assert POLICY.topics_for(ALICE, None) == ["trade-updates", "prices"]
    assert POLICY.topics_for(PRO, None) == ["trade-updates", "prices", "signals"]
    assert POLICY.topics_for(ADMIN, ["signals", "signals"]) == ["signals"]
    with pytest.raises(Refused, match="needs tier pro or elite; your tier is free") as refused:
        POLICY.topics_for(ALICE, ["signals"])
    assert refused.value.status == 403
    with pytest.raises(Refused, match="unknown topic 'x'") as unknown:
        POLICY.topics_for(PRO, ["x"])
    assert unknown.value.status == 400


def test_rate_counts_the_last_window() -> None:
    rate = Rate(window=10)
    for second in range(100, 110):
        rate.add(5, now=second + 0.5)
    assert rate.per_second(now=109.9) == 5
    assert rate.per_second(now=114.9) == pytest.approx(2.5)
    assert rate.per_second(now=130) == 0
