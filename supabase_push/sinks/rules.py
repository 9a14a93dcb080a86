"""Rules: which changes become alerts, with what priority and message. No I/O."""

from __future__ import annotations

import enum
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..events import ChangeEvent
from .expr import Expression

__all__ = ["Alert", "Priority", "Rule", "rules_from"]


class Priority(enum.IntEnum):
    LOW = 1
    NORMAL = 2
    HIGH = 3
    CRITICAL = 4

    @classmethod
    def parse(cls, text: str) -> Priority:
        try:
            return cls[text.upper()]
        except KeyError:
            raise ConfigError(f"unknown priority {text!r}", hint="low, normal, high or critical") from None

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Alert:
    rule: str
    priority: Priority
    message: str
    event: ChangeEvent
    sinks: tuple[str, ...]

    @property
    def key(self) -> str:
        """Stable across re-sends (the same change, the same rule): receivers may dedupe on it."""
        return f"{self.event.cursor}/{self.rule}"

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "rule": self.rule, "priority": str(self.priority), "message": self.message,
                "event": self.event.model_dump(mode="json", by_alias=True, exclude={"prev", "source"})}


@dataclass(frozen=True)
class Rule:
    name: str
    priority: Priority = Priority.NORMAL
    topics: frozenset[str] = frozenset()
    tables: frozenset[str] = frozenset()
    ops: frozenset[str] = frozenset()
    events: frozenset[str] = frozenset()
    """Names of published events (op EVENT) this rule takes; a rule naming some takes no row change."""
    when: Expression | None = None
    message: str = "{op} on {table}"
    sinks: tuple[str, ...] = ()
    """Where its alerts go; empty: every sink."""

    def __post_init__(self) -> None:
        _template_parts(self.message, self.name)  # a bad template fails at load, not at the first alert

    def alert(self, event: ChangeEvent) -> Alert | None:
        if event.op == "GAP":
            return None
        if self.topics and event.topic not in self.topics:
            return None
        if self.tables and event.table not in self.tables and f"{event.schema_name}.{event.table}" not in self.tables:
            return None
        if self.ops and event.op not in self.ops:
            return None
        if self.events and event.event not in self.events:
            return None
        if self.when is not None and not self.when.matches(event.record, event.old_record,
                                                           deleted=event.op == "DELETE"):
            return None
        return Alert(self.name, self.priority, _render(self, event), event, self.sinks)


def _template_parts(text: str, rule: str) -> list[tuple[str, str | None, str | None, str | None]]:
    """``str.format`` syntax limited to plain names: ``{symbol}``, not ``{symbol.__class__}``."""
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ConfigError(f"rule {rule!r}: message {text!r} is not a valid template: {exc}") from None
    for _, name, spec, conversion in parts:
        if name is not None and not name.isidentifier():
            raise ConfigError(f"rule {rule!r}: message field {{{name}}} must be a plain column name",
                              hint="write {symbol}, not {symbol.x} or {row[0]}")
        if (spec and "{" in spec) or conversion not in (None, "s", "r"):
            raise ConfigError(f"rule {rule!r}: message field {{{name}}} has an unsupported format")
    return parts


def _render(rule: Rule, event: ChangeEvent) -> str:
    """The message: the row's columns, and op, table, topic, cursor, rule, priority; a missing one shows '?'."""
    row: Mapping[str, Any] = event.row or {}
    extra = {"op": event.op, "table": event.table, "event": event.event, "topic": event.topic,
             "cursor": str(event.cursor), "rule": rule.name, "priority": str(rule.priority)}
    out = []
    for literal, name, spec, conversion in _template_parts(rule.message, rule.name):
        out.append(literal)
        if name is None:
            continue
        value = row.get(name, extra.get(name, "?"))
        value = repr(value) if conversion == "r" else value
        try:
            out.append(format(value, spec or ""))
        except (ValueError, TypeError):
            out.append(str(value))
    return "".join(out)


def rules_from(items: Sequence[Mapping[str, Any]]) -> list[Rule]:
    """Rules from the ``[[rules]]`` tables of a config file (see docs/alerts.md)."""
    rules = []
    known = {"name", "priority", "topic", "table", "op", "event", "when", "message", "sinks"}
    for n, item in enumerate(items, 1):
        name = item.get("name") or f"rule {n}"
        unknown = set(item) - known
        if unknown:
            raise ConfigError(f"rule {name!r}: unknown key {sorted(unknown)[0]!r}",
                              hint=f"keys: {', '.join(sorted(known))}")
        ops = frozenset(op.upper() for op in _strings(item.get("op"), name, "op"))
        if ops - {"INSERT", "UPDATE", "DELETE", "TRUNCATE", "EVENT"}:
            raise ConfigError(f"rule {name!r}: op must be INSERT, UPDATE, DELETE, TRUNCATE or EVENT")
        when = item.get("when")
        if when is not None and not isinstance(when, str):
            raise ConfigError(f"rule {name!r}: when must be a string")
        try:
            rules.append(Rule(
                name=str(name), priority=Priority.parse(str(item.get("priority", "normal"))),
                topics=frozenset(_strings(item.get("topic"), name, "topic")),
                tables=frozenset(_strings(item.get("table"), name, "table")), ops=ops,
                events=frozenset(_strings(item.get("event"), name, "event")),
                when=Expression(when) if when else None,
                message=str(item.get("message", "{op} on {table}")),
                sinks=tuple(_strings(item.get("sinks"), name, "sinks"))))
        except ConfigError as exc:
            if exc.message.startswith("rule "):
                raise
            raise ConfigError(f"rule {name!r}: {exc.message}", hint=exc.hint) from None
    if len({r.name for r in rules}) != len(rules):
        raise ConfigError("two rules have the same name", hint="names key the alerts (and their dedupe keys)")
    return rules


def _strings(value: Any, rule: str, key: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise ConfigError(f"rule {rule!r}: {key} must be a string or a list of strings")
