"""Rule conditions: a small, safe expression language over a change's row. No I/O, no eval.

    quantity * price >= 100000 and side == "buy"
    unrealized_pnl <= -5000
    old.status == "open" and status == "closed"
    symbol in ["AAPL", "MSFT"] or abs(day_pnl) > 10000

Names are columns of the row (the new row; the old one for a DELETE); ``old.x`` and
``new.x`` pick a side. Numbers compare as decimals. A NULL or missing column makes the
comparison false rather than an error; a type mismatch (text times a number) is false too.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from ..errors import ConfigError

__all__ = ["Expression"]

_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}
_ARITHMETIC: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.Mod: operator.mod,
}
_MAX_LENGTH = 1000


class _Missing(Exception):
    """A NULL or absent column on the way: the whole condition is false."""


_FALSE = (_Missing, TypeError, ArithmeticError, InvalidOperation, RecursionError)
"""What makes a condition (or one branch of and/or) false rather than an error."""


class Expression:
    def __init__(self, source: str) -> None:
        self.source = source
        if len(source) > _MAX_LENGTH:
            raise ConfigError(f"condition longer than {_MAX_LENGTH} characters")
        try:
            tree = ast.parse(source.strip(), mode="eval")
        except SyntaxError as exc:
            raise ConfigError(f"condition {source!r} is not valid: {exc.msg} at column {exc.offset}") from None
        except (ValueError, MemoryError, RecursionError):
            raise ConfigError(f"condition {source[:60]!r} is not valid") from None
        self._check(tree.body)
        self._tree = tree.body

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"

    def matches(self, new: Mapping[str, Any] | None, old: Mapping[str, Any] | None = None,
                *, deleted: bool = False) -> bool:
        row = (old if deleted else new) or {}
        try:
            return bool(self._eval(self._tree, row, new or {}, old or {}))
        except _FALSE:
            return False

    # -- checking, once, at load time ----------------------------------------------------------

    def _check(self, node: ast.AST) -> None:
        if isinstance(node, ast.BoolOp | ast.Compare | ast.BinOp | ast.UnaryOp):
            if isinstance(node, ast.Compare) and not all(type(op) in _COMPARE for op in node.ops):
                self._refuse(node)
            if isinstance(node, ast.BinOp) and type(node.op) not in _ARITHMETIC:
                self._refuse(node)
            if isinstance(node, ast.UnaryOp) and not isinstance(node.op, ast.Not | ast.USub | ast.UAdd):
                self._refuse(node)
            for child in ast.iter_child_nodes(node):
                if not isinstance(child, ast.cmpop | ast.operator | ast.unaryop | ast.boolop):
                    self._check(child)
        elif isinstance(node, ast.Constant):
            if not isinstance(node.value, str | int | float | bool) and node.value is not None:
                self._refuse(node)
        elif isinstance(node, ast.Name):
            pass
        elif isinstance(node, ast.Attribute):
            if not (isinstance(node.value, ast.Name) and node.value.id in ("old", "new")):
                raise ConfigError(f"in {self.source!r}: only old.<column> and new.<column> may use a dot")
        elif isinstance(node, ast.List | ast.Tuple):
            for item in node.elts:
                if not isinstance(item, ast.Constant):
                    raise ConfigError(f"in {self.source!r}: a list may hold only constants")
                self._check(item)
        elif isinstance(node, ast.Call):
            if not (isinstance(node.func, ast.Name) and node.func.id == "abs" and len(node.args) == 1
                    and not node.keywords):
                raise ConfigError(f"in {self.source!r}: the only function is abs(x)")
            self._check(node.args[0])
        else:
            self._refuse(node)

    def _refuse(self, node: ast.AST) -> None:
        snippet = ast.get_source_segment(self.source.strip(), node) or type(node).__name__
        raise ConfigError(f"in {self.source!r}: {snippet!r} is not allowed",
                          hint="use columns, numbers, strings, + - * / %, comparisons, in, and/or/not, abs()")

    # -- evaluating ----------------------------------------------------------------------------

    def _eval(self, node: ast.AST, row: Mapping[str, Any], new: Mapping[str, Any], old: Mapping[str, Any]) -> Any:
        if isinstance(node, ast.BoolOp):
            if isinstance(node.op, ast.And):
                return all(self._truth(v, row, new, old) for v in node.values)
            return any(self._truth(v, row, new, old) for v in node.values)
        if isinstance(node, ast.UnaryOp):
            value = self._eval(node.operand, row, new, old)
            if isinstance(node.op, ast.Not):
                return not value
            return -value if isinstance(node.op, ast.USub) else +value
        if isinstance(node, ast.Compare):
            try:
                left = self._eval(node.left, row, new, old)
                for op, right_node in zip(node.ops, node.comparators, strict=True):
                    right = self._eval(right_node, row, new, old)
                    if not _COMPARE[type(op)](left, right):
                        return False
                    left = right
            except _FALSE:
                return False  # a comparison with NULL, or of text with a number, is false (so `not` it is true)
            return True
        if isinstance(node, ast.BinOp):
            return _ARITHMETIC[type(node.op)](self._eval(node.left, row, new, old),
                                              self._eval(node.right, row, new, old))
        if isinstance(node, ast.Constant):
            return _number(node.value)
        if isinstance(node, ast.Name):
            return _column(row, node.id)
        if isinstance(node, ast.Attribute):
            assert isinstance(node.value, ast.Name)
            return _column(old if node.value.id == "old" else new, node.attr)
        if isinstance(node, ast.List | ast.Tuple):
            return [self._eval(item, row, new, old) for item in node.elts]
        assert isinstance(node, ast.Call)
        return abs(self._eval(node.args[0], row, new, old))

    def _truth(self, node: ast.AST, row: Mapping[str, Any], new: Mapping[str, Any], old: Mapping[str, Any]) -> bool:
        try:
            return bool(self._eval(node, row, new, old))
        except _FALSE:
            return False  # one false branch of an `or` must not sink the other


def _column(row: Mapping[str, Any], name: str) -> Any:
    value = row.get(name)
    if value is None:
        raise _Missing(name)
    return _number(value)


def _number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    return Decimal(str(value))
