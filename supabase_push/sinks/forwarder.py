"""The forwarder: a subscriber's events through the rules, to the sinks, at least once.

It acknowledges a change to its subscriber (which saves the cursor file) only when every alert
from it is settled (sent, or written to the dead-letter file), so a forwarder that is stopped or
killed resumes where nothing is pending: an alert is never skipped; after a kill -9 one may be
sent twice (sinks get a stable key to dedupe on).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..config import Settings
from ..errors import ConfigError, SupabasePushError
from ..events import DEFAULT_ROUTES, ChangeEvent, Cursor
from ..subscribe import FileCursorStore, Reader, Subscriber
from ..subscribe.readers import read_pages
from .config_file import ForwardConfig
from .delivery import DeadLetters
from .rules import Alert, Priority

__all__ = ["Forwarder", "Outcome", "dry_run", "replay_dead_letters", "subscriber_for"]

log = logging.getLogger("supabase_push.sinks")

GAP_RULE = "supabase-push: changes pruned before forwarding"

Outcome = Callable[[str, Alert, str], None]
"""Called with (sink, alert, "sent" | "dead-lettered") as each alert settles."""


class Forwarder:
    """Runs ``subscriber`` (built with ``cursor_store=config.cursor_file``: it resumes from there, and
    :func:`subscriber_for` builds one so) through the rules to the sinks, and acknowledges each
    change to it once the change's alerts have settled."""

    def __init__(self, config: ForwardConfig, subscriber: Subscriber, *, on_outcome: Outcome | None = None,
                 max_pending: int = 10_000) -> None:
        if subscriber.cursor_store is None:
            raise ConfigError("the forwarder's subscriber has no cursor store: a restart would skip or repeat alerts",
                              hint="build it with cursor_store=config.cursor_file (subscriber_for does)")
        self.config = config
        self.subscriber = subscriber
        subscriber.auto_ack = False  # a change is done when its alerts have settled, not when it is handed out
        self.on_outcome = on_outcome
        self.max_pending = max_pending
        self.events = 0
        self.alerts = 0
        self._pending: deque[tuple[Cursor, list[asyncio.Future[str]]]] = deque()
        """Each change not yet settled, in order, with the futures of its alerts."""
        self._unsettled = 0
        self._room = asyncio.Event()

    @staticmethod
    def start_cursor(config: ForwardConfig) -> Cursor | None:
        """Where the last run left off (None on a first run)."""
        return FileCursorStore(config.cursor_file).load()

    async def run(self) -> None:
        """Until cancelled; on the way out, what is queued is given ``grace`` by :meth:`drain`."""
        # Its start claims the cursor file: a second forwarder on it is refused before it sends anything.
        async with self.subscriber:
            workers = [asyncio.create_task(w.run(), name=f"supabase-push-sink-{w.sink.name}")
                       for w in self.config.workers]
            try:
                async for event in self.subscriber:
                    self.events += 1
                    futures = []
                    for alert in self._alerts(event):
                        self.alerts += 1
                        for worker in self.config.workers:
                            if worker.accepts(alert):
                                futures.append(self._watch(worker.sink.name, alert, worker.submit(alert)))
                    self._pending.append((event.cursor, futures))
                    self._settle()
                    while self._unsettled > self.max_pending:
                        self._room.clear()
                        await self._room.wait()  # sinks are behind: hold the subscriber (it reads on later)
            finally:
                await self._stop_workers(workers)  # while the subscriber is open: its last acknowledgement saves

    def _alerts(self, event: ChangeEvent) -> list[Alert]:
        if event.op == "GAP":  # alerts may have been missed: that is an alert of its own, to every sink
            record = event.record or {}
            return [Alert(GAP_RULE, Priority.CRITICAL,
                          f"changes after {record.get('after')} up to {record.get('pruned_through')} were pruned from "
                          "the change log before the forwarder read them: their alerts were never evaluated",
                          event, ())]
        return [alert for rule in self.config.rules if (alert := rule.alert(event)) is not None]

    async def run_until(self, stop: asyncio.Event, *, grace: float) -> None:
        """:meth:`run` until ``stop`` is set, then give queued alerts ``grace`` seconds to go out and stop.
        What ends :meth:`run` first (a subscriber refused access) is raised."""
        task = asyncio.create_task(self.run())
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait([task, stopping], return_when=asyncio.FIRST_COMPLETED)
            if not task.done():
                await self.drain(grace)
        finally:
            stopping.cancel()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def drain(self, grace: float) -> None:
        """Give queued alerts up to ``grace`` seconds to go out (call before cancelling :meth:`run`)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                while self._unsettled:
                    await asyncio.sleep(0.05)

    def _watch(self, sink: str, alert: Alert, future: asyncio.Future[str]) -> asyncio.Future[str]:
        self._unsettled += 1

        def settled(done: asyncio.Future[str]) -> None:
            self._unsettled -= 1
            try:
                if self.on_outcome is not None and not done.cancelled():
                    self.on_outcome(sink, alert, done.result())
            except Exception:  # a reporting bug must not stop the cursor
                log.exception("the outcome callback raised on alert %s", alert.key)
            self._settle()

        future.add_done_callback(settled)
        return future

    def _settle(self) -> None:
        settled = None
        while self._pending and all(f.done() for f in self._pending[0][1]):
            settled = self._pending.popleft()[0]
        if settled is not None:
            self.subscriber.ack(settled)
        self._room.set()

    async def _stop_workers(self, workers: list[asyncio.Task[None]]) -> None:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        for worker in self.config.workers:
            worker.abandon("the forwarder stopped before this alert was sent")
        self._settle()
        for worker in self.config.workers:
            await worker.sink.close()

    def stats(self) -> dict[str, Any]:
        return {"events": self.events, "alerts": self.alerts, "cursor": str(self.subscriber.acknowledged),
                "sinks": {w.sink.name: vars(w.stats) for w in self.config.workers},
                "dead_letter_file": str(self.config.dead_letters.path)}


def subscriber_for(config: ForwardConfig, settings: Settings, *, start: Cursor | str | None = None,
                   **options: Any) -> Subscriber:
    """The subscriber a forwarder of ``config`` runs: on the config's topics, resuming from its cursor file,
    else from ``start`` (default: the newest change); ``options`` as :meth:`Subscriber.from_settings`."""
    return Subscriber.from_settings(settings, topics=config.topics, start=start or "now",
                                    cursor_store=config.cursor_file, **options)


async def replay_dead_letters(config: ForwardConfig, on_outcome: Outcome | None = None) -> dict[str, int]:
    """Send every dead letter again, each to the sink that refused it; what fails again is written back.

    The file is first moved aside (``.replaying``), so a replay that is interrupted is picked up,
    whole, by the next one."""
    path = config.dead_letters.path
    aside = path.with_name(path.name + ".replaying")
    if path.exists():
        with aside.open("a", encoding="utf-8") as out:
            out.write(path.read_text(encoding="utf-8"))
        path.unlink()
    if not aside.exists():
        return {"replayed": 0, "sent": 0, "dead-lettered": 0}
    workers = {w.sink.name: w for w in config.workers}
    tasks = [asyncio.create_task(w.run()) for w in workers.values()]
    counts = {"replayed": 0, "sent": 0, "dead-lettered": 0}
    futures = []
    try:
        for sink, alert in DeadLetters(aside, unreadable=config.dead_letters.unreadable):
            worker = workers.get(sink)
            if worker is None:  # the sink is gone from the config: keep the letter
                config.dead_letters.add(sink, alert, "no such sink in the config any more", 0)
                counts["dead-lettered"] += 1
                continue
            counts["replayed"] += 1
            futures.append((sink, alert, worker.submit(alert)))
        for sink, alert, future in futures:
            outcome = await _outcome(future, tasks)
            counts[outcome] += 1
            if on_outcome is not None:
                on_outcome(sink, alert, outcome)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for worker in workers.values():
            worker.abandon("the replay stopped before this alert was sent")
            await worker.sink.close()
    aside.unlink()
    return counts


async def _outcome(future: asyncio.Future[str], workers: list[asyncio.Task[None]]) -> str:
    """The alert's outcome; an error, not a wait for ever, if a sink worker has stopped meanwhile."""
    waiting: set[asyncio.Future[Any]] = {future, *workers}
    done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    if future in done:
        return future.result()
    stopped = done.pop()
    raise SupabasePushError(f"a sink worker stopped during the replay: {stopped.exception()!r}",
                            hint="the dead letters not yet replayed are kept; run the replay again")


async def dry_run(config: ForwardConfig, reader: Reader, start: Cursor,
                  *, page_size: int = 500) -> AsyncIterator[tuple[Alert, list[str]]]:
    """The alerts the rules would raise over the change log from ``start`` to its newest change, each
    with the sinks it would go to. Sends nothing and saves no cursor: for trying rules on real history."""
    end = await reader.head()
    if start >= end:
        return
    topics = config.topics or list(DEFAULT_ROUTES.values())
    async for page in read_pages(reader, start, topics, page_size=page_size, until=end):
        for event in page:
            for rule in config.rules:
                alert = rule.alert(event)
                if alert is not None:
                    yield alert, [w.sink.name for w in config.workers if w.accepts(alert)]
