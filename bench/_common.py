"""What the benchmarks share: percentiles, and the local server as users run it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

from realtime import RealtimeChannelOptions


def channel_options(**config: Any) -> RealtimeChannelOptions:
    """Options for the official client's ``channel()``: ``channel_options(private=True)``."""
    return cast(RealtimeChannelOptions, {"config": config})


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@contextmanager
def local_server(dsn: str) -> Iterator[dict[str, Any]]:
    """`supabase-push serve` in its own process (so it does not share our GIL); yields its
    JSON line: url, realtime_url, anon_key, service_role_key."""
    proc = subprocess.Popen([sys.executable, "-m", "supabase_push", "serve", "--db-url", dsn, "--port", "0",
                             "--json"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        yield json.loads(proc.stdout.readline())
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
