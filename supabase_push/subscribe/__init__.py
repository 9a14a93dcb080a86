"""The subscriber client: every change once, in order, through the best transport available.

::

    async with Subscriber.from_env(topics=["position-updates", "trade-updates"]) as sub:
        async for event in sub:
            ...
"""

from __future__ import annotations

from .cursor_store import CursorStore, FileCursorStore
from .filters import RowFilter
from .listen import ListenTransport
from .push import PushTransport
from .readers import Reader, RestReader, SqlReader, reader_for
from .realtime import RealtimeTransport, TokenSource
from .sequencer import Sequencer, Verdict
from .subscriber import Subscriber, SubscriberStats

__all__ = [
    "CursorStore",
    "FileCursorStore",
    "ListenTransport",
    "PushTransport",
    "Reader",
    "RealtimeTransport",
    "RestReader",
    "RowFilter",
    "Sequencer",
    "SqlReader",
    "Subscriber",
    "SubscriberStats",
    "TokenSource",
    "Verdict",
    "reader_for",
]
