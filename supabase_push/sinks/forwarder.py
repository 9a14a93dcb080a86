"""The forwarder: a subscriber's events through the rules, to the sinks, at least once.

Its cursor moves past a change only when every alert from it is settled (sent, or written
to the dead-letter file), so a forwarder that is stopped or killed resumes where nothing
is pending: an alert is never skipped; after a kill -9 one may be sent twice (sinks get a
stable key to dedupe on).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..errors import SupabasePushError
from ..events import DEFAULT_ROUTES, ChangeEvent, Cursor
from ..subscribe import FileCursorStore, Reader, Subscriber
from ..subscribe.readers import read_pages
from .config_file import ForwardConfig
from .delivery import DeadLetters
from .rules import Alert, Priority

__all__ = ["Forwarder", "Outcome", "dry_run", "replay_dead_letters"]

log = logging.getLogger("supabase_push.sinks")

GAP_RULE = "supabase-push: changes pruned before forwarding"

Outcome = Callable[[str, Alert, str], None]
"""Called with (sink, alert, "sent" | "dead-lettered") as each alert settles."""


class Forwarder:
    def __init__(self, config: ForwardConfig, subscriber: Subscriber, *, on_outcome: Outcome | None = None,
                 max_pending: int = 10_000, save_every: float = 0.2) -> None:
        self.config = config
        self.subscriber = subscriber
        self.store = FileCursorStore(config.cursor_file)
        self.on_outcome = on_outcome
        self.max_pending = max_pending
        self.save_every = save_every
        self.events = 0
        self.alerts = 0
        self._pending: deque[tuple[Cursor, list[asyncio.Future[str]]]] = deque()
        """Each change not yet settled, in order, with the futures of its alerts."""
        self._unsettled = 0
        self._settled: Cursor | None = None
        self._saved: Cursor | None = self.store.load()
        self._room = asyncio.Event()

    @staticmethod
    def start_cursor(config: ForwardConfig) -> Cursor | None:
        """Where the last run left off (None on a first run)."""
        return FileCursorStore(config.cursor_file).load()

    async def run(self) -> None:
        """Until cancelled; on the way out, what is queued is given ``grace`` by :meth:`drain`."""
        self.store.claim()  # a second forwarder on the same cursor file is refused before it sends anything
        workers = [asyncio.create_task(w.run(), name=f"supabase-push-sink-{w.sink.name}")
                   for w in self.config.workers]
        saver = asyncio.create_task(self._save_periodically())
        try:
            async with self.subscriber:
                async for event in self.subscriber:
                    self.events += 1
                    futures = []
                    for alert in self._alerts(event):
                        self.alerts += 1
                        for worker in self.config.workers:
                            if worker.accepts(alert):
                                futures.append(self._watch(worker.sink.name, alert, worker.submit(alert)))
                    self._pending.append((event.position, futures))
                    self._settle()
                    while self._unsettled > self.max_pending:
                        self._room.clear()
                        await self._room.wait()  # sinks are behind: hold the subscriber (it reads on later)
        finally:
            saver.cancel()
            await self._stop_workers(workers)

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
        while self._pending and all(f.done() for f in self._pending[0][1]):
            self._settled = self._pending.popleft()[0]
        self._room.set()

    async def _save_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.save_every)
            self._save()

    def _save(self) -> None:
        if self._settled is not None and (self._saved is None or self._settled > self._saved):
            self.store.save(self._settled)
            self._saved = self._settled

    async def _stop_workers(self, workers: list[asyncio.Task[None]]) -> None:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        for worker in self.config.workers:
            worker.abandon("the forwarder stopped before this alert was sent")
        self._settle()
        self._save()
        self.store.close()
        for worker in self.config.workers:
            await worker.sink.close()

    def stats(self) -> dict[str, Any]:
        return {"events": self.events, "alerts": self.alerts, "cursor": str(self._saved) if self._saved else None,
                "sinks": {w.sink.name: vars(w.stats) for w in self.config.workers},
                "dead_letter_file": str(self.config.dead_letters.path)}


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
