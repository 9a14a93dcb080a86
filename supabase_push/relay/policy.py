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
    their ``sub`` (the new row; the old one for a DELETE). ``shared_topics``: topics every user sees
    whole (market data, say). ``topic_tiers``: topics only some tiers may open. The admin sees all."""

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
        if principal.admin or event.op == "GAP" or event.topic in self.shared_topics:
            return True
        return self.owner_of(event) == principal.user_id

    def owner_of(self, event: ChangeEvent) -> str | None:
        row = event.old_record if event.op == "DELETE" else event.record
        owner = (row or {}).get(self.owner_column)
        return None if owner is None else str(owner)

    def _tier_allows(self, principal: Principal, topic: str) -> bool:
        tiers = self.topic_tiers.get(topic)
        return tiers is None or principal.admin or principal.tier in tiers
