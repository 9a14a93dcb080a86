"""Running until Ctrl-C: the one way a long-running command or script hears SIGINT and SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator

__all__ = ["stop_on_signals"]


@contextlib.contextmanager
def stop_on_signals() -> Iterator[asyncio.Event]:
    """An event that SIGINT or SIGTERM sets while the block runs, on the running loop; the handlers go with
    the block. Where the loop cannot take them (not the main thread), the event is set only by its owner."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    taken: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            taken.append(sig)
    try:
        yield stop
    finally:
        for sig in taken:
            loop.remove_signal_handler(sig)
