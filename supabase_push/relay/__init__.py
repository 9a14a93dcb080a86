"""The SSE relay: one subscriber per process, fanned out to many browsers over Server-Sent Events.

Each browser sees only its own rows (an owner column) and the topics its tier allows, and
resumes from its Last-Event-ID after any disconnect. ``supabase-push relay`` runs it; see
docs/relay.md.
"""

from __future__ import annotations

from .app import RelayConfig, create_app
from .auth import Authenticator, Principal, Refused
from .hub import Hub
from .policy import Policy
from .sse import SseEvent, SseParser

__all__ = ["Authenticator", "Hub", "Policy", "Principal", "Refused", "RelayConfig", "SseEvent", "SseParser",
           "create_app"]
