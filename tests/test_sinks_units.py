"""Pure logic of alert forwarding: conditions, templates, priorities, the rate limit."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supabase_push.errors import ConfigError
from supabase_push.events import ChangeEvent
from supabase_push.sinks import Expression, Priority, RateLimit, Rule, rules_from

ROW = {"symbol": "AAPL", "side": "buy", "quantity": 1000, "price": 150.5, "unrealized_pnl": -6000.25,
       "status": "closed", "day_pnl": None, "tags": "x"}


@pytest.mark.parametrize(("condition", "expected"), [
    ("quantity * price >= 100000", True),
    ("quantity * price >= 1000000", False),
    ("price == 150.5", True),  # decimals: no float surprises
    ("quantity * price == 150500", True),
    ('side == "buy" and symbol in ["AAPL", "MSFT"]', True),
    ('symbol not in ("AAPL",)', False),
    ("abs(unrealized_pnl) > 6000 and unrealized_pnl < 0", True),
    ("day_pnl > 1", False),  # NULL: false, not an error
    ("day_pnl > 1 or quantity > 1", True),  # ... and one false branch does not sink the other
    ("not (day_pnl > 1)", True),
    ("missing_column == 1", False),
    ("symbol * 2 > 1", False),  # text times a number: false
    ("quantity / 0 > 1", False),
    ("old.status == 'open' and status == 'closed'", True),
    ("new.quantity - old.quantity > 500", False),  # old has no quantity
    ("-unrealized_pnl > 6000", True),
    ("1 < quantity < 2000", True),
])
def test_conditions(condition: str, expected: bool) -> None:
    assert Expression(condition).matches(ROW, {"status": "open"}) is expected


def test_a_delete_is_judged_on_the_old_row() -> None:
    assert Expression("symbol == 'AAPL'").matches(None, ROW, deleted=True)


@pytest.mark.parametrize("condition", [
    "__import__('os').system('id')", "quantity.__class__", "lambda: 1", "[x for x in y]", "a if b else c",
    "f'{x}'", "x ** 99999999", "x @ y", "{1: 2}", "x[0]", "max(1, 2)", "abs(x, y)", "(", "", "x := 1",
    "'a' * 10 ** 9", "[symbol]", "x" * 1001,
])
def test_anything_else_is_refused_at_load(condition: str) -> None:
    with pytest.raises(ConfigError):
        Expression(condition)


@settings(max_examples=2000, deadline=None)
@given(st.text(max_size=80), st.dictionaries(st.text(max_size=8), st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=10)), max_size=5))
def test_no_condition_crashes_or_hangs(condition: str, row: dict[str, Any]) -> None:
    try:
        expression = Expression(condition)
    except ConfigError:
        return
    assert expression.matches(row, row) in (True, False)


def event(op: str = "INSERT", **record: Any) -> ChangeEvent:
    return ChangeEvent(id=7, cursor="3:7", topic="trade-updates", schema="public", table="trades", op=op,  # type: ignore[arg-type]
                       record=None if op == "DELETE" else record, old_record=record if op == "DELETE" else None,
                       commit_ts=datetime(2026, 12, 1, tzinfo=UTC))


def test_rules_filter_by_table_topic_and_op_and_render_messages() -> None:
    rules = rules_from([
        {"name": "big", "table": "public.trades", "op": ["insert"], "when": "quantity > 10",
         "message": "{side} {quantity:>6} {symbol!r} ({table}, {op}, {cursor}, {priority}) {nope}",
         "priority": "high"},
        {"name": "deletes", "op": "DELETE", "topic": ["trade-updates"]},
        {"name": "elsewhere", "table": "positions"},
    ])
    big, deletes, elsewhere = rules
    alert = big.alert(event(side="buy", quantity=50, symbol="AAPL"))
    assert alert is not None and alert.priority is Priority.HIGH
    assert alert.message == "buy     50 'AAPL' (trades, INSERT, 3:7, high) ?"
    assert alert.key == "3:7/big"
    assert big.alert(event(quantity=5)) is None and big.alert(event("DELETE", quantity=50)) is None
    gone = deletes.alert(event("DELETE", id=9))
    assert gone is not None and gone.message == "DELETE on trades" and gone.priority is Priority.NORMAL
    assert elsewhere.alert(event(quantity=50)) is None
    assert Rule("gap").alert(event("GAP")) is None


@pytest.mark.parametrize(("rule", "needle"), [
    ({"name": "a", "op": "MERGE"}, "op must be INSERT, UPDATE, DELETE, TRUNCATE or EVENT"),
    ({"name": "a", "colour": "red"}, "unknown key 'colour'"),
    ({"name": "a", "message": "{0}"}, "plain column name"),
    ({"name": "a", "message": "{x"}, "not a valid template"),
    ({"name": "a", "table": 3}, "table must be a string or a list of strings"),
    ({"name": "a", "when": 5}, "when must be a string"),
])
def test_bad_rules(rule: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        rules_from([rule])


def test_two_rules_may_not_share_a_name() -> None:
    with pytest.raises(ConfigError, match="same name"):
        rules_from([{"name": "a"}, {"name": "a"}])


def test_priorities_order_and_parse() -> None:
    assert Priority.parse("Critical") > Priority.parse("high") > Priority.NORMAL > Priority.LOW
    assert str(Priority.HIGH) == "high"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rate_limit_is_a_token_bucket() -> None:
    clock = Clock()
    limit = RateLimit(2, 1.0, clock=clock)
    for _ in range(2):  # a burst of two
        assert limit.wait_time() == 0
        limit.take()
    assert limit.wait_time() == pytest.approx(0.5)
    clock.now += 0.5
    assert limit.wait_time() == 0
    limit.take()
    clock.now += 10  # refills to the burst size, no more
    limit.take()
    limit.take()
    assert limit.wait_time() > 0


@pytest.mark.parametrize(("text", "count", "period"), [("20/min", 20, 60), ("5/s", 5, 1), ("100 / hour", 100, 3600)])
def test_rate_strings(text: str, count: int, period: float) -> None:
    limit = RateLimit.parse(text)
    assert (limit.count, limit.period) == (count, period)


@pytest.mark.parametrize("text", ["lots", "0/min", "5/fortnight", "-1/s", "1.5/s"])
def test_bad_rate_strings(text: str) -> None:
    with pytest.raises(ConfigError):
        RateLimit.parse(text)
