"""What a principal may see: which topics (by tier), and which rows (by an owner column). No I/O."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from ..events import ChangeEvent
from .auth import Principal, Refused

__all__ = ["Policy"]


@dataclass(frozen=True)
class Policy:
    """``topics``: what the relay serves. ``owner_column``: a user sees a row when this column equals
    their ``sub`` (the new row; the old one for a DELETE), and a published event when its payload's
    column does (an event whose payload names no owner is for everyone on the topic).
    ``shared_topics``: topics every user sees whole (market data, say). ``topic_tiers``: topics only
    some tiers may open. The admin sees all."""

    topics: Sequence[str]
    owner_column: str = "user_id"
    shared_topics: Collection[str] = ()
    topic_tiers: Mapping[str, Collection[str]] = field(default_factory=dict)

    def topics_for(self, principal: Principal, asked: Sequence[str] | None) -> list[str]:
        """The topics of one stream: those asked for (all allowed, if none), or Refused 403/400 with why."""
        allowed = [t for t in self.topics if self._tier_allows(principal, t)]
        if not asked:
            return allowed
        unknown = [t for t in asked if t not in self.topics]
        if unknown:
            raise Refused(f"unknown topic {unknown[0]!r}: this relay serves {', '.join(self.topics)}", status=400)
        refused = [t for t in asked if t not in allowed]
        if refused:
            tiers = " or ".join(self.topic_tiers[refused[0]])
            raise Refused(f"topic {refused[0]!r} needs tier {tiers}; your tier is {principal.tier or 'none'}",
                          status=403)
        return list(dict.fromkeys(asked))

    def sees(self, principal: Principal, event: ChangeEvent) -> bool:
        """Whether this change goes to this principal (gap notices go to everyone)."""
        return self.view(principal, event) is not None

    def view(self, principal: Principal, event: ChangeEvent) -> ChangeEvent | None:
        """The change as this principal may see it, or None.

        An UPDATE that moves a row from one owner to another is, to the old owner, a DELETE
        that carries only their old row, and to the new owner an INSERT that carries only the
        new one: neither sees the other's data. The admin and shared topics see it as it is."""
        if principal.admin or self.for_everyone(event):
            return event
        old, new = self._owner(event.old_record), self._owner(event.record)
        if event.op == "UPDATE" and old is not None and new is not None and old != new:
            if principal.user_id == new:
                return event.model_copy(update={"op": "INSERT", "old_record": None})
            if principal.user_id == old:
                return event.model_copy(update={"op": "DELETE", "record": None})
            return None
        return event if self.owner_of(event) == principal.user_id else None

    def for_everyone(self, event: ChangeEvent) -> bool:
        """Whether every viewer of the topic sees this change whole: a gap notice, a TRUNCATE (it carries
        no row: every viewer learns the table was emptied), a change on a shared topic, an event for no
        one in particular."""
        return (event.op in ("GAP", "TRUNCATE") or event.topic in self.shared_topics
                or (event.op == "EVENT" and self._owner(event.record) is None))

    def owners_of(self, event: ChangeEvent) -> set[str]:
        """Every user who may see some of the change: the new row's owner, and the old row's."""
        return {owner for owner in (self._owner(event.record), self._owner(event.old_record)) if owner is not None}

    def owner_of(self, event: ChangeEvent) -> str | None:
        """The owner of the change's row: the new one, or the old one for a DELETE (or an UPDATE whose new
        row has none)."""
        row = event.row
        return self._owner(row) if event.op != "UPDATE" else (self._owner(row) or self._owner(event.old_record))

    def _owner(self, row: Mapping[str, object] | None) -> str | None:
        owner = (row or {}).get(self.owner_column)
        return None if owner is None else str(owner)

    def _tier_allows(self, principal: Principal, topic: str) -> bool:
        tiers = self.topic_tiers.get(topic)
        return tiers is None or principal.admin or principal.tier in tiers
