"""The change event: one envelope, whatever the transport that delivered it."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

__all__ = ["DEFAULT_ROUTES", "START", "ChangeEvent", "Cursor", "Operation", "Source"]

Operation = Literal["INSERT", "UPDATE", "DELETE", "TRUNCATE", "GAP", "EVENT", "SNAPSHOT"]
"""TRUNCATE: every row of the table went (no record, no old record). GAP: changes up to this cursor
were pruned from the log before this subscriber read them. EVENT: a service published it
(``supabase_push.publish``, :meth:`Broadcaster.publish`): ``event`` is its name, ``record`` its payload.
SNAPSHOT: a row as it stood when a subscriber started with ``start="snapshot"`` (``record``; its cursor is the
snapshot's; ``record`` None: a snapshot starts again, drop the rows the earlier attempt gave)."""
Source = Literal["realtime", "listen", "poll", "catch-up", "snapshot"]

# table -> topic, as installed when no routes are given.
DEFAULT_ROUTES: dict[str, str] = {
    "public.positions": "position-updates",
    "public.trades": "trade-updates",
    "public.portfolio_snapshots": "portfolio-updates",
}


BIGINT_MAX = 2**63 - 1


class Cursor(NamedTuple):
    """Position in the change log: the commit sequence of the transaction, then the change id.

    Its text form ``"seq:id"`` is what events carry and what subscribers persist.
    """

    seq: int
    id: int

    @classmethod
    def parse(cls, text: str) -> Cursor:
        seq, sep, change_id = text.partition(":")
        if not sep or not seq.isascii() or not seq.isdigit() or not change_id.isascii() or not change_id.isdigit():
            raise ValueError(f"not a cursor: {text!r} (expected 'seq:id', e.g. '42:1007')")
        if len(seq) > 19 or len(change_id) > 19 or max(position := cls(int(seq), int(change_id))) > BIGINT_MAX:
            raise ValueError(f"not a cursor: {text[:60]!r} is past the largest position the change log has (bigint)")
        return position

    def __str__(self) -> str:
        return f"{self.seq}:{self.id}"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


START = Cursor(0, 0)
"""The cursor before the first change."""


class ChangeEvent(BaseModel):
    """A committed change to a routed table, or an event a service published in a transaction (op EVENT)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    id: int
    cursor: Cursor
    """Where the change stands in the log; its text (``str(cursor)``, ``"seq:id"``) is what JSON and SSE carry and
    what a subscriber saves."""
    topic: str
    schema_name: str = Field(alias="schema")
    table: str
    op: Operation
    record: dict[str, Any] | None = None
    old_record: dict[str, Any] | None = None
    commit_ts: datetime
    source: Source | None = None
    truncated: bool = False
    """On a push: it carries no rows (every NOTIFY, since any role may LISTEN): read it by cursor."""
    prev: dict[str, str] | None = None
    """On a push: for each topic, the cursor of its last change before this one."""
    event: str | None = None
    """An event's name (op EVENT); None for a row change."""

    @field_validator("cursor", mode="before")
    @classmethod
    def _parse_cursor(cls, value: Any) -> Any:
        return Cursor.parse(value) if isinstance(value, str) else value

    @field_serializer("cursor")
    def _cursor_text(self, cursor: Cursor) -> str:
        return str(cursor)

    @property
    def position(self) -> Cursor:
        """The cursor (what ``cursor`` was before it was typed)."""
        return self.cursor

    @property
    def row(self) -> dict[str, Any] | None:
        """The row the change is about: the deleted row for a DELETE, else the row as it stands after it
        (an event's payload for op EVENT; None for TRUNCATE and for a DELETE whose old row was not kept)."""
        return self.old_record if self.op == "DELETE" else self.record

    @property
    def payload(self) -> dict[str, Any] | None:
        """An event's payload (op EVENT: its ``record``); None for a row change."""
        return self.record if self.op == "EVENT" else None

