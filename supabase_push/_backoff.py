"""How long to wait before trying again: the one rule every retry loop here follows."""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: the wait before try ``n + 1`` (``n`` failures so far, from 1) is
    drawn from the upper half of ``min(cap, first * 2 ** (n - 1))``, so waits grow, stay under the cap,
    and clients that failed together do not come back together."""

    first: float
    """The ceiling of the first wait, in seconds."""
    cap: float
    """The largest wait, in seconds."""

    def ceiling(self, failures: int) -> float:
        return min(self.cap, self.first * 2.0 ** min(max(failures, 1) - 1, 60))

    def delay(self, failures: int) -> float:
        ceiling = self.ceiling(failures)
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 (jitter, not a secret)
