"""``supabase-push demo``: a simulated trading backend, three subscribers, a live dashboard."""

from __future__ import annotations

from .run import run_demo

__all__ = ["run_demo"]
