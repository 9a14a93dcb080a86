"""Row filters in PostgREST's syntax (``user_id=eq.42``), checked against an event's row."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..events import ChangeEvent

__all__ = ["RowFilter"]

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b, "neq": lambda a, b: a != b,
    "lt": lambda a, b: a < b, "lte": lambda a, b: a <= b,
    "gt": lambda a, b: a > b, "gte": lambda a, b: a >= b,
}


@dataclass(frozen=True)
class RowFilter:
    """``column=op.value`` with op one of eq, neq, lt, lte, gt, gte, in (``in.(a,b)``)."""

    column: str
    op: str
    values: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> RowFilter:
        column, eq, rest = text.partition("=")
        op, dot, value = rest.partition(".")
        if not (eq and dot and column.strip()) or op not in (*_OPS, "in"):
            raise ConfigError(f"not a row filter: {text!r}",
                              hint="use column=op.value, op one of eq, neq, lt, lte, gt, gte, in; e.g. user_id=eq.42")
        if op == "in":
            if not (value.startswith("(") and value.endswith(")")):
                raise ConfigError(f"not a row filter: {text!r}", hint="in takes a list: status=in.(open,closed)")
            return cls(column.strip(), op, tuple(v.strip() for v in value[1:-1].split(",")))
        return cls(column.strip(), op, (value,))

    def matches(self, event: ChangeEvent) -> bool:
        """Whether the row (the new one, or the old one of a DELETE) passes."""
        row = event.row
        if not row or self.column not in row or row[self.column] is None:
            return False
        actual = row[self.column]
        if self.op == "in":
            return any(_equal(actual, v) for v in self.values)
        expected = _coerce(self.values[0], actual)
        try:
            return _OPS[self.op](actual, expected)
        except TypeError:
            return False


def _coerce(text: str, like: Any) -> Any:
    if isinstance(like, bool):
        return text.lower() == "true"
    if isinstance(like, (int, float)):
        try:
            return type(like)(float(text)) if isinstance(like, float) else int(text)
        except ValueError:
            try:
                return float(text)
            except ValueError:
                return text
    return text


def _equal(actual: Any, text: str) -> bool:
    return bool(actual == _coerce(text, actual))
