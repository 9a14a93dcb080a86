"""``supabase-push demo``: the whole system on a throwaway Postgres and the local Realtime server.

A simulated trading backend writes; three subscribers (Realtime, LISTEN, polling) watch;
a live dashboard shows the book they rebuild and how each transport is doing. At the end
every subscriber's stream is checked against the change log: lost must be 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import psycopg
from rich.console import Console, RenderableType
from rich.live import Live

from .. import schema
from .._signals import stop_on_signals
from ..broadcast import Broadcaster
from ..changelog import aread_head
from ..config import Settings
from ..db import aconnect, connect
from ..errors import ConfigError, SchemaError
from ..events import DEFAULT_ROUTES, Cursor
from ..subscribe import SqlReader, Subscriber
from ..subscribe.readers import read_pages
from .dashboard import render
from .market import ACCOUNT, Market
from .watch import Book, Tally, Watch

__all__ = ["run_demo"]

TOPICS = list(DEFAULT_ROUTES.values())
TABLES = ("positions", "trades", "portfolio_snapshots")
HEADLESS_SECONDS = 10.0

Say = Callable[[str], None]


def run_demo(*, duration: float | None = None, live: bool = False, supabase: bool = False,
             say: Say = print, console: Console | None = None) -> dict[str, Any]:
    """Run the demo and return its summary. ``live``: show the dashboard (until Ctrl-C without
    ``duration``); otherwise trade for ``duration`` (default 10 s) and report."""
    if duration is None and not live:
        duration = HEADLESS_SECONDS
    started = time.perf_counter()
    if supabase:
        settings = Settings.from_env()
        missing = [name for name, value in (("DATABASE_URL", settings.database_url),
                                            ("SUPABASE_URL", settings.supabase_url),
                                            ("SUPABASE_SERVICE_ROLE_KEY", settings.service_role_key)) if not value]
        if missing:
            raise ConfigError(f"--supabase needs {', '.join(missing)}",
                              hint="set them to your project's values (Project Settings > API and Database)")
        assert settings.database_url is not None
        summary = asyncio.run(_demo(settings.database_url, settings, duration, live, say, console, own=True))
        summary["postgres_version"] = None  # your project's
    else:
        summary = asyncio.run(_local_demo(duration, live, say, console))
        say("[green]✓[/green] stopped the local server and removed the throwaway Postgres")
    summary["total_seconds"] = round(time.perf_counter() - started, 2)  # set-up, trading, checks and tear-down
    return summary


async def _local_demo(duration: float | None, live: bool, say: Say, console: Console | None) -> dict[str, Any]:
    """The demo on a local stack: Realtime and NOTIFY both, so every transport has something to hear."""
    from ..local.stack import LocalStack, StackSettings

    async with LocalStack(StackSettings(broadcast_mode="both", grants=False)) as local:
        assert local.postgres is not None and local.server is not None and local.applied is not None
        dsn, server = local.database_url, local.server
        say(f"[green]✓[/green] throwaway Postgres {local.postgres.version} (binaries: {local.postgres.bin_dir})")
        report = await asyncio.to_thread(_verify, dsn)
        say(f"[green]✓[/green] applied the triggers (schema v{local.applied.schema_version}, broadcast to Realtime "
            f"and NOTIFY), verify: {len(report.checks)} checks, {len(report.problems)} problem(s)")
        say(f"[green]✓[/green] local Realtime server on {server.url}")
        realtime = Settings(supabase_url=server.url, service_role_key=server.service_role_key, database_url=dsn)
        summary = await _demo(dsn, realtime, duration, live, say, console, own=False)
        summary["postgres_version"] = local.postgres.version
        summary["ok"] = summary["ok"] and report.ok
        return summary


def _verify(dsn: str) -> schema.VerifyReport:
    with connect(dsn) as conn:
        return schema.verify(conn)


async def _demo(dsn: str, realtime: Settings, duration: float | None, live: bool, say: Say,
                console: Console | None, *, own: bool) -> dict[str, Any]:
    """``own``: the user's project (``--supabase``): its demo rows are deleted at the end."""
    async with contextlib.AsyncExitStack() as stack:
        info = await asyncio.to_thread(_status, dsn)
        if not info.installed:
            raise SchemaError("supabase-push is not installed on this database",
                              hint="run `supabase-push apply --create-tables` first")

        broadcaster = await Broadcaster.from_settings(realtime).start()
        stack.push_async_callback(broadcaster.close)
        market = Market(dsn, broadcaster)
        await market.open_book()
        head = await _head(dsn)

        book, tally = Book(), Tally()
        plain = Settings(database_url=dsn)
        watches = []
        if "realtime" in info.broadcast_path:
            watches.append(Watch("realtime", Subscriber.from_settings(
                realtime, topics=TOPICS, transport="realtime", start=head, liveness_interval=2), tally))
        if "notify" in info.broadcast_path:
            watches.append(Watch("listen", Subscriber.from_settings(plain, topics=TOPICS, transport="listen",
                                                                    start=head), tally))
        watches.append(Watch("poll", Subscriber.from_settings(plain, topics=TOPICS, transport="poll", start=head,
                                                              poll_interval=0.5), tally))
        watches[0].subscriber.on(None, book)
        for watch in watches:
            watch.subscriber.on(None, watch)
            await watch.subscriber.start()
            stack.push_async_callback(watch.subscriber.close)
        await asyncio.wait_for(asyncio.gather(*(w.subscriber.wait_ready() for w in watches)), 20)
        say(f"[green]✓[/green] subscribers up: {', '.join(w.name for w in watches)}; trading"
            + (f" for {duration:g} s" if duration else " until Ctrl-C"))

        stop = stack.enter_context(stop_on_signals())
        loop = asyncio.get_running_loop()
        trading_started = time.monotonic()
        trading = asyncio.create_task(market.run(stop))
        if duration is not None:
            loop.call_later(duration, stop.set)
        footer = "Ctrl-C to stop" + (" (ends by itself)" if duration else "")
        if live:
            with Live(console=console, refresh_per_second=4, transient=False) as screen:
                def view(note: str) -> RenderableType:
                    return render(book, watches, elapsed=time.monotonic() - trading_started, footer=note,
                                  height=screen.console.size.height)

                while not stop.is_set():
                    screen.update(view(footer))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 0.25)
                screen.update(view("stopping"))
        else:
            await stop.wait()
        await trading
        traded = time.monotonic() - trading_started

        final = await _head(dsn)
        deadline = time.monotonic() + 15
        while any(w.subscriber.cursor < final for w in watches) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        logged = await _logged(dsn, head)
        if own:
            await _clean_up(dsn)

    by_table = Counter(table for _, table in logged)
    cursors = [cursor for cursor, _ in logged]
    transports = {w.name: w.summary(cursors) for w in watches}
    lost = max(t["lost"] for t in transports.values())
    duplicates = sum(t["duplicates"] for t in transports.values())
    ok = (lost == 0 and duplicates == 0 and all(t["in_order"] for t in transports.values())
          and all(by_table[table] > 0 for table in TABLES))
    summary: dict[str, Any] = {
        "ok": ok, "mode": "supabase" if own else "local", "traded_seconds": round(traded, 2),
        "changes": len(cursors), "by_table": {table: by_table[table] for table in TABLES},
        "lost": lost, "duplicates": duplicates, "transports": transports,
        "service_broadcasts": {"accepted": market.announced, "failed": market.announce_failures},
    }
    mark = "[green]✓[/green]" if ok else "[red]✗[/red]"
    say(f"{mark} {len(cursors)} changes in {traded:.1f} s ("
        + ", ".join(f"{n} {t}" for t, n in summary["by_table"].items()) + f"); lost {lost}, duplicates {duplicates}")
    for name, figures in transports.items():
        latency = figures["latency_ms"]
        say(f"  {name:<9} delivered {figures['delivered']:>6}  commit-to-callback p50 {latency['p50']} ms, "
            f"p99 {latency['p99']} ms  ({', '.join(f'{k} {v}' for k, v in figures['by_source'].items())})")
    say(f"  service broadcasts (trade_executed through the broadcast helpers): {market.announced} accepted")
    return summary


def _status(dsn: str) -> schema.Status:
    with connect(dsn) as conn:
        return schema.status(conn)


async def _head(dsn: str) -> Cursor:
    async with await aconnect(dsn) as conn:
        return await aread_head(conn)


async def _logged(dsn: str, after: Cursor) -> list[tuple[Cursor, str]]:
    """(cursor, table) of every change after ``after``, from the log: the truth the subscribers must match."""
    reader = SqlReader(dsn)
    try:
        return [(e.cursor, e.table) async for page in read_pages(reader, after, TOPICS, page_size=5000)
                for e in page if e.op != "GAP"]
    finally:
        await reader.close()


async def _clean_up(dsn: str) -> None:
    """On a real project: remove the demo account's rows."""
    async with await aconnect(dsn) as conn, conn.transaction():
        for table in ("trades", "portfolio_snapshots", "positions"):
            await conn.execute(psycopg.sql.SQL("DELETE FROM {} WHERE account_id = %s").format(
                psycopg.sql.Identifier(table)), (ACCOUNT,))
