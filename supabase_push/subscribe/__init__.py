"""The subscriber client: every change once, in order, through the best transport available.

::

    async with Subscriber.from_env(topics=["position-updates", "trade-updates"]) as sub:
        async for event in sub:
            ...
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import exports

if TYPE_CHECKING:
    from .cursor_store import CursorStore, FileCursorStore
    from .listen import ListenTransport
    from .readers import Reader, RestReader, SqlReader, read_pages, reader_for
    from .realtime import RealtimeTransport
    from .row_filter import RowFilter
    from .sequencer import Sequencer, Verdict
    from .subscriber import Subscriber, SubscriberStats
    from .transports import PushTransport, TokenSource, transport_from_settings

__getattr__, __dir__ = exports(__name__, {
    ".cursor_store": ["CursorStore", "FileCursorStore"],
    ".row_filter": ["RowFilter"],
    ".listen": ["ListenTransport"],
    ".readers": ["Reader", "RestReader", "SqlReader", "read_pages", "reader_for"],
    ".realtime": ["RealtimeTransport"],
    ".sequencer": ["Sequencer", "Verdict"],
    ".subscriber": ["Subscriber", "SubscriberStats"],
    ".transports": ["PushTransport", "TokenSource", "transport_from_settings"],
})

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
    "read_pages",
    "reader_for",
    "transport_from_settings",
]
