"""An event loop in a daemon thread, so sync code can run coroutines from anywhere.

Sync code calls :meth:`Portal.call`; it works outside any event loop and also from inside
a running one (a sync function called by async code), since the coroutine runs on the
portal's own thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["Portal"]

T = TypeVar("T")


class Portal:
    def __init__(self, name: str = "supabase-push") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        if not self.loop.is_running() and self.loop.is_closed():
            coro.close()
            raise RuntimeError("the portal is closed")
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the portal and wait for its result (from a thread other than the portal's)."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("Portal.call() from the portal's own thread would wait forever; await it instead")
        return self.submit(coro).result(timeout)

    async def acall(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the portal and await its result from another event loop."""
        if threading.current_thread() is self._thread:
            return await coro
        return await asyncio.wrap_future(self.submit(coro))

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        if threading.current_thread() is not self._thread:
            self._thread.join()
