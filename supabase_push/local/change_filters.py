"""postgres_changes filters: ``column=op.value`` with the documented operators, without I/O.

Operators: eq, neq, lt, lte, gt, gte, and ``in.(a,b,c)`` (at most 100 values). Values compare
as numbers when the column is numeric, as booleans for booleans, else as text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

OPERATORS = ("eq", "neq", "lt", "lte", "gt", "gte", "in")
MAX_IN_VALUES = 100

_FILTER = re.compile(r"^(?P<column>[^=]+)=(?P<op>[a-z]+)\.(?P<value>.*)$", re.DOTALL)


class FilterError(ValueError):
    """A filter Realtime would refuse; the message is what it would say."""


@dataclass(frozen=True, slots=True)
class Filter:
    column: str
    op: str
    values: tuple[str, ...]  # one value, or the members of an ``in`` list

    def matches(self, text: str | None, category: str) -> bool:
        """Whether a column value (Postgres text form, None for NULL) passes."""
        if text is None:
            return False  # SQL: NULL compared with anything is not true
        left = _comparable(text, category)
        rights = [_comparable(v, category) for v in self.values]
        try:
            if self.op == "in":
                return left in rights
            right = rights[0]
            return bool({
                "eq": left == right,
                "neq": left != right,
                "lt": left < right,  # type: ignore[operator]
                "lte": left <= right,  # type: ignore[operator]
                "gt": left > right,  # type: ignore[operator]
                "gte": left >= right,  # type: ignore[operator]
            }[self.op])
        except TypeError:
            return False


def parse(text: str | None) -> Filter | None:
    """None for no filter (missing or blank)."""
    if text is None or not text.strip():
        return None
    found = _FILTER.match(text.strip())
    if found is None:
        raise FilterError(f"Error parsing `filter` params: {text!r} is not column=operator.value")
    column, op, value = found["column"].strip(), found["op"], found["value"]
    if op not in OPERATORS:
        raise FilterError(f"Error parsing `filter` params: unknown operator {op!r}, use one of {', '.join(OPERATORS)}")
    if op != "in":
        return Filter(column, op, (value,))
    if not (value.startswith("(") and value.endswith(")")):
        raise FilterError("Error parsing `filter` params: `in` takes a list, e.g. id=in.(1,2,3)")
    values = tuple(v.strip().strip('"') for v in value[1:-1].split(",")) if value[1:-1].strip() else ()
    if len(values) > MAX_IN_VALUES:
        raise FilterError(f"too many values for `in` filter. Maximum {MAX_IN_VALUES}")
    return Filter(column, op, values)


def _comparable(text: str, category: str) -> object:
    if category == "N":
        try:
            return Decimal(text)
        except InvalidOperation:
            return text
    if category == "B":
        return text.lower() in ("t", "true", "1", "yes", "on")
    return text
