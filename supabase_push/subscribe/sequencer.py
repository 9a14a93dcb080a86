"""Which events to deliver, in what order: the no-loss rules, without any I/O.

Pushes arrive in commit order but at most once. Each names, for every topic, the cursor
of that topic's last change before it (``prev``). The latest of those over the topics
this subscriber follows is the change just before the push in its own stream: if that is
the last change it accounted for, the push continues an unbroken stream and is delivered
as it comes (a hint, a push without its row, is read by cursor then); anything else means
something was missed (a dropped message, a reconnect) and the subscriber reads the log by
cursor instead. Everything at or before the cursor is a duplicate. Reads by cursor are
complete by construction.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence

from ..events import START, ChangeEvent, Cursor

__all__ = ["Sequencer", "Verdict"]


class Verdict(enum.Enum):
    DELIVER = "deliver"
    """The push continues the stream: deliver it as it came."""
    DUPLICATE = "duplicate"
    """At or before the cursor: accounted for already."""
    READ = "read"
    """Something before it has not been seen here: read the log by cursor (a missed push, not a pruned
    range; that is a change with op ``GAP``)."""


class Sequencer:
    def __init__(self, topics: Sequence[str], cursor: Cursor = START) -> None:
        self.topics = frozenset(topics)
        self.cursor = cursor
        """The last change delivered (or skipped by a filter)."""

    def judge(self, pushed: ChangeEvent) -> Verdict:
        if pushed.cursor <= self.cursor:
            return Verdict.DUPLICATE
        if pushed.topic not in self.topics or pushed.prev is None:
            return Verdict.READ
        try:
            before = max((Cursor.parse(pushed.prev[t]) for t in self.topics if t in pushed.prev), default=START)
        except ValueError:
            return Verdict.READ
        return Verdict.DELIVER if before == self.cursor else Verdict.READ

    def fresh(self, read: Iterable[ChangeEvent]) -> list[ChangeEvent]:
        """The events of a read that come after the cursor (a read may overlap pushes already delivered)."""
        return [event for event in read if event.cursor > self.cursor]

    def advance(self, event: ChangeEvent) -> None:
        position = event.cursor
        if position <= self.cursor:
            raise ValueError(f"cursor {self.cursor} would move back to {event.cursor}")
        self.cursor = position
