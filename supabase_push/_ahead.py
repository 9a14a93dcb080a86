"""Reading ahead: a page's request sent before the page before it is built, and dropped when not wanted."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

__all__ = ["drop", "until_sent"]


async def until_sent(task: asyncio.Task[Any], sent: asyncio.Event | None = None) -> None:
    """Until ``task`` has sent its request: ``sent`` set, or one step of it where sending takes one (psycopg's)."""
    if sent is None:
        await asyncio.sleep(0)
        return
    waiting = asyncio.ensure_future(sent.wait())
    try:
        await asyncio.wait((task, waiting), return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()


async def drop(task: asyncio.Task[Any]) -> None:
    """``task`` cancelled (nothing, once it is done) and waited for: its request ends before whatever holds the
    connection does, and its result or error is taken, unwanted."""
    task.cancel()
    with contextlib.suppress(BaseException):
        await task
