"""Which events to deliver, in what order: the no-loss rules, without any I/O.

Pushes arrive in commit order but at most once. Each names the change before it in the
log (``prev``). A push whose ``prev`` is the last change this subscriber accounted for
continues an unbroken stream and is delivered as it comes; anything else means something
was missed (a dropped message, a reconnect, another topic's change in between), and the
subscriber reads the log by cursor instead. Everything at or before the cursor is a
duplicate. Reads by cursor are complete by construction.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from ..events import START, ChangeEvent, Cursor

__all__ = ["Sequencer", "Verdict"]


class Verdict(enum.Enum):
    DELIVER = "deliver"
    DUPLICATE = "duplicate"
    GAP = "gap"


class Sequencer:
    def __init__(self, cursor: Cursor = START) -> None:
        self.cursor = cursor
        """The last change delivered (or skipped by a filter)."""

    def judge(self, pushed: ChangeEvent) -> Verdict:
        if pushed.position <= self.cursor:
            return Verdict.DUPLICATE
        if pushed.truncated or pushed.prev is None or pushed.prev != str(self.cursor):
            return Verdict.GAP
        return Verdict.DELIVER

    def fresh(self, read: Iterable[ChangeEvent]) -> list[ChangeEvent]:
        """The events of a read that come after the cursor (a read may overlap pushes already delivered)."""
        return [event for event in read if event.position > self.cursor]

    def advance(self, event: ChangeEvent) -> None:
        if event.position <= self.cursor:
            raise ValueError(f"cursor {self.cursor} would move back to {event.cursor}")
        self.cursor = event.position
