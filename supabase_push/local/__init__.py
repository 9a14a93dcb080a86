"""A Supabase Realtime-compatible server for development and tests (``supabase-push serve``).

It speaks the Realtime protocol (Phoenix channels vsn 1.0.0 and 2.0.0) on top of a plain
Postgres: broadcast, presence, postgres_changes streamed by logical decoding, database
broadcast through ``realtime.send``, REST broadcast, HS256 JWT auth and RLS-authorized
private channels. The official clients (``realtime`` on PyPI, ``@supabase/realtime-js``)
work against it. Not for production: see docs/local-server.md for what it leaves out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import exports
from .server_config import DEFAULT_PORT, ServerConfig
from .tokens import DEV_SECRET, mint

if TYPE_CHECKING:
    from .server import LocalRealtime

# The server needs aiohttp (the ``server`` extra); its settings, ``footprint`` and ``tokens`` do not.
__getattr__, __dir__ = exports(__name__, {".server": ["LocalRealtime"]})

__all__ = ["DEFAULT_PORT", "DEV_SECRET", "LocalRealtime", "ServerConfig", "mint"]
