"""``supabase-push tail``: live events from whatever is configured, and the subscriber's state."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from rich.console import Console
from rich.text import Text

from ._signals import stop_on_signals
from .errors import AccessRefusedError, TransportError
from .events import ChangeEvent
from .subscribe import Subscriber

__all__ = ["event_line", "run_tail"]

OP_STYLE = {"INSERT": "green", "UPDATE": "yellow", "DELETE": "red", "TRUNCATE": "bold red", "GAP": "bold magenta",
            "EVENT": "bold cyan", "SNAPSHOT": "blue"}


def event_line(event: ChangeEvent) -> dict[str, Any]:
    """One ``--json`` line: the envelope, where it came from, and how late it is."""
    line = event.model_dump(mode="json", by_alias=True, exclude={"prev"})
    line["lag_ms"] = round(max(0.0, time.time() - event.commit_ts.timestamp()) * 1000, 3)
    return line


def _short(row: dict[str, Any] | None, width: int = 80) -> str:
    text = json.dumps(row, default=str, separators=(",", ":")) if row is not None else "-"
    return text if len(text) <= width else text[: width - 1] + "…"


async def run_tail(subscriber: Subscriber, *, as_json: bool, count: int | None, timeout: float | None,
                   stats_every: float, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Print events until Ctrl-C, ``count`` events, or ``timeout`` seconds; 0, or 1 if ``count`` was not reached.

    Raises what ended the subscriber (:class:`AccessRefusedError` with ``stop_on_refusal``), and
    :class:`TransportError` if it never reached the change log or the push transport."""
    console = Console(file=out, highlight=False, soft_wrap=True)
    status = Console(file=err, highlight=False, soft_wrap=True)

    def report(final: bool = False) -> None:
        stats = subscriber.stats.as_dict()
        if as_json:
            print(json.dumps({"stats": stats, "final": final}), file=err, flush=True)
        else:
            delivered = ", ".join(f"{k} {v}" for k, v in stats["delivered"].items()) or "none yet"
            lag = f"{stats['lag_ms']:.1f} ms" if stats["lag_ms"] is not None else "-"
            failures = (f" · read failures {stats['read_failures']}" if stats["read_failures"] else "") + (
                f" · push failures {stats['push_failures']}" if stats["push_failures"] else "")
            status.print(f"{stats['state']} · delivered {delivered} · duplicates {stats['duplicates']} · "
                         f"gaps {stats['gaps']} · switches {stats['switches']} · lag {lag} · "
                         f"cursor {stats['cursor']}{failures}", style="dim", markup=False)

    show: Callable[[ChangeEvent], None]
    if as_json:
        def show(event: ChangeEvent) -> None:
            print(json.dumps(event_line(event), default=str), file=out, flush=True)
    else:
        def show(event: ChangeEvent) -> None:
            # Styled pieces, not markup: no text of an event (an op without a style, a row holding "[b]") can
            # break the line.
            console.print(Text.assemble(
                f"{event.commit_ts:%H:%M:%S.%f}"[:-3] + "  ", (f"{event.op:<6}", OP_STYLE.get(event.op, "")),
                f" {event.topic:<18} {event.cursor:>12}  ", (f"{event.source or '':<8}", "dim"),
                " " + (f"{event.event} " if event.event else "") + _short(event.row)))

    seen = 0

    async def consume() -> None:
        nonlocal seen
        async for event in subscriber:
            show(event)
            seen += 1
            if count is not None and seen >= count:
                return

    async def periodic() -> None:
        while True:
            await asyncio.sleep(stats_every)
            report()

    with stop_on_signals() as stop:
        async with subscriber:
            ending = [asyncio.create_task(consume()), asyncio.create_task(stop.wait())]
            reporting = [asyncio.create_task(periodic())] if stats_every > 0 else []
            await asyncio.wait(ending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            for task in ending + reporting:
                task.cancel()
            outcomes = await asyncio.gather(*ending, *reporting, return_exceptions=True)
    report(final=True)
    failure = next((o for o in outcomes if isinstance(o, Exception)), None)
    if failure is not None:
        raise failure
    if not subscriber.stats.connected:
        why = subscriber.stats.last_error or f"no answer from {subscriber.reader.describe()}"
        kind = AccessRefusedError if subscriber.stats.refused else TransportError
        raise kind(f"never connected, nothing was read: {why}",
                             hint="check the URL, the password or key, and that the server is up "
                                  "(supabase-push doctor checks each)")
    return 0 if count is None or seen >= count else 1
