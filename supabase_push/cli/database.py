"""Installing and keeping the trigger SQL: apply, verify, uninstall, status, prune, stamp."""

from __future__ import annotations

import contextlib
import json
import re
import sys
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ..errors import ConfigError, SchemaError
from ._app import (
    DbUrl,
    DryRun,
    JsonOut,
    app,
    err,
    out,
    print_json,
    reporting_errors,
    settings_with,
)

if TYPE_CHECKING:  # imported where used, so `supabase-push --help` stays quick
    from .. import schema

STATUS_STYLE = {"ok": "green", "missing": "red", "drifted": "red", "warning": "yellow"}


def _route_options(tables: list[str] | None) -> list[schema.Route] | None:
    from .. import schema
    return [schema.parse_route(text) for text in tables] if tables else None


@app.command()
def apply(
    db_url: DbUrl = None,
    table: Annotated[list[str] | None, typer.Option(
        "--table", "-t", metavar="TABLE=TOPIC",
        help="Route a table's changes to a topic (repeatable). Added to the installed routes, which stay "
        "(see --replace). A new install without -t gets the defaults: positions=position-updates, "
        "trades=trade-updates, portfolio_snapshots=portfolio-updates.",
    )] = None,
    replace: Annotated[bool, typer.Option(
        "--replace", help="Make the -t routes (or, without -t, the defaults) the whole set: routes not "
        "named are removed, and listed.")] = False,
    create_tables: Annotated[bool, typer.Option(
        "--create-tables", help="Create the reference trading tables if they do not exist.")] = False,
    broadcast: Annotated[str, typer.Option(
        help="How triggers push: auto (realtime.send on Supabase, else NOTIFY), realtime, "
        "notify, both, none (change log only).")] = "auto",
    public: Annotated[bool, typer.Option(
        "--public", help="Send Realtime broadcasts to public channels (default: private, "
        "authorized by RLS policies on realtime.messages).")] = False,
    event_topic: Annotated[list[str] | None, typer.Option(
        "--event-topic", "-e", metavar="TOPIC",
        help="Declare a topic for events from services (supabase-push publish), besides the routed tables' "
        "own (repeatable). Added to the declared ones; with --replace, the whole set.")] = None,
    dry_run: DryRun = False,
    as_json: JsonOut = False,
) -> None:
    """Install or update the triggers and the change log (idempotent, one transaction)."""
    from .. import schema
    from ..db import connect, describe_dsn
    with reporting_errors(as_json):
        options: dict[str, Any] = {
            "broadcast_mode": schema.check_broadcast_mode(broadcast),  # before connecting: a typo is said first
            "private_broadcast": not public,
            "create_tables": create_tables,
        }
        routes = _route_options(table)
        if dry_run:  # the SQL is declarative: it installs exactly these routes, whatever is installed now
            print(schema.apply_sql(routes, **options, event_topics=event_topic))
            return
        with connect(db_url) as conn:
            result = schema.apply(conn, routes, replace=replace, **options, event_topics=event_topic or ())
        if as_json:
            print_json({"ok": True, **result.__dict__})
            return
        target = describe_dsn(db_url or "")
        verb = "Applied" if result.changed else "Already up to date:"
        out.print(f"[green]✓[/green] {verb} supabase-push schema v{result.schema_version} "
                  f"on {escape(target)}")
        if result.upgraded_from is not None:
            out.print(f"  upgraded in place from schema v{result.upgraded_from} (sql/migrations/); saved cursors "
                      "resume where they were")
            if result.upgraded_from < 2:
                out.print("  changes now get their cursor from the stamper: any supabase-push process runs it, "
                          "or `supabase-push stamp`, or pg_cron (docs/supabase.md)")
            if result.upgraded_from < 3:
                out.print("  services can now publish durable events: supabase-push publish (docs/broadcast.md)")
        for route in result.routes:
            name = schema.route_name(route)
            was = result.previous.get(name)
            mark, note = ("[green]+[/green]", ", added") if was is None else (
                ("[yellow]~[/yellow]", f", was {was}") if was != route["topic"] else (" ", ""))
            out.print(f"  {mark} {escape(name)} -> {escape(route['topic'])} "
                      f"[dim]({route['trigger_name']}{escape(note)})[/dim]")
        for line in result.removed:
            out.print(f"  [red]-[/red] {escape(line)} [dim](removed: its trigger is dropped, its changes are no "
                      "longer logged)[/dim]")
        if result.event_topics:
            out.print(f"  event topics: {escape(', '.join(result.event_topics))}")


@app.command()
def verify(db_url: DbUrl = None, as_json: JsonOut = False) -> None:
    """Check every installed object; exit 1 if anything is missing or drifted."""
    from .. import schema
    from ..db import connect
    with reporting_errors(as_json), connect(db_url) as conn:
        report = schema.verify(conn)
    if as_json:
        print_json(report.as_dict())
    else:
        table = Table("kind", "object", "status", "detail", title="supabase-push verify")
        for check in report.checks:
            style = STATUS_STYLE[check.status]
            table.add_row(check.kind, check.name, f"[{style}]{check.status}[/{style}]", check.detail)
        out.print(table)
        problems = report.problems
        if report.ok:
            out.print(f"[green]✓[/green] all {len(report.checks)} checks passed"
                      + (f" ({len(problems)} warning(s))" if problems else ""))
        else:
            failed = [c for c in problems if c.failed]
            out.print(f"[red]✗[/red] {len(failed)} problem(s): "
                      + "; ".join(f"{c.name} {c.status}" for c in failed))
            out.print("[dim]fix: supabase-push apply[/dim]")
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def uninstall(
    db_url: DbUrl = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    dry_run: DryRun = False,
    as_json: JsonOut = False,
) -> None:
    """Remove the triggers, the change log and the supabase_push schema. Your rows stay."""
    from .. import schema
    from ..db import connect
    with reporting_errors(as_json):
        if dry_run:
            print(schema.uninstall_sql())
            return
        if not yes:
            if not sys.stdin.isatty():
                raise ConfigError("uninstall deletes the change log and needs confirmation",
                                  hint="pass --yes")
            typer.confirm("Remove supabase-push triggers and its change log?", abort=True)
        from ..local import footprint

        with connect(db_url) as conn:
            removed = schema.uninstall(conn)
            served = footprint.inspect(conn).recorded
    if as_json:
        print_json({"ok": True, "removed": removed, "local_server_objects": served})
        return
    if removed:
        out.print("[green]✓[/green] removed supabase-push (triggers, change log, schema)")
    else:
        out.print("nothing to remove: supabase-push is not installed")
    if served:
        out.print("[yellow]![/yellow] `supabase-push serve --install-realtime` added "
                  f"{escape(footprint.describe(served))} here: `supabase-push serve --clean --db-url ...` removes them")


@app.command()
def status(db_url: DbUrl = None, as_json: JsonOut = False) -> None:
    """Show what is installed and how much the change log holds."""
    from .. import schema
    from ..db import connect
    with reporting_errors(as_json), connect(db_url) as conn:
        info = schema.status(conn)
    if as_json:
        print_json(info.as_dict())
        return
    if not info.installed:
        out.print("supabase-push is [yellow]not installed[/yellow] (run supabase-push apply)")
        return
    grid = Table.grid(padding=(0, 2))
    rows: list[tuple[str, str]] = [
        ("schema version", str(info.schema_version)),
        ("installed", f"{info.installed_at} (updated {info.updated_at})"),
        ("broadcast", push_path(info)),
        ("change log", f"{info.changes} changes in {info.transactions} transactions, "
                       f"last cursor {info.last_cursor or '-'} at {info.last_commit_at or '-'}"),
        ("broadcast failures", f"{info.broadcast_failures}"
                               + (f" (last: {info.last_failure})" if info.last_failure else "")),
        ("pruned through", info.pruned_through or "- (nothing pruned)"),
        ("stamper", _stamper_line(info)),
    ]
    for route in info.routes:
        rows.append(("route", f"{route['schema_name']}.{route['table_name']} -> {route['topic']} "
                              f"({route['trigger_name']})"))
    if info.event_topics:
        rows.append(("event topics", ", ".join(info.event_topics)))
    for key, value in rows:
        grid.add_row(f"[bold]{key}[/bold]", value)
    out.print(grid)


def _stamper_line(info: schema.Status) -> str:
    running = f"loop in backend {info.stamper_pid}" if info.stamper_pid is not None else \
        "[yellow]no loop running[/yellow] (any supabase-push process, `supabase-push stamp` or pg_cron runs one)"
    waiting = (f"[yellow]{info.pending_changes} changes in {info.pending_transactions} transactions wait for "
               "a cursor[/yellow]") if info.pending_changes else "nothing waiting"
    return f"{running}; {waiting}; last stamp {info.stamped_at or '-'}"


def push_path(info: schema.Status) -> str:
    paths = info.broadcast_path
    text = f"{info.broadcast_mode} -> {', '.join(paths) or 'none (change log only)'}"
    if "realtime" in paths:
        text += f" ({'private' if info.private_broadcast else 'public'} Realtime channels)"
    elif "notify" in paths:
        text += " (a NOTIFY channel per topic)"
    if info.path_drift is not None and info.applied_path is not None:
        text += (f"; [red]changed since apply[/red], which chose {escape(', '.join(info.applied_path) or 'none')}"
                 " (supabase-push verify says why)")
    return text


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> timedelta:
    """``90s``, ``30m``, ``12h``, ``7d``, ``2w`` (or a bare number of seconds)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text.lower())
    if not match:
        raise ConfigError(f"not a duration: {text!r}", hint="use a number with s, m, h, d or w, e.g. 7d")
    return timedelta(seconds=float(match[1]) * _UNITS[match[2] or "s"])


@app.command()
def prune(
    older_than: Annotated[str, typer.Option(
        "--older-than", metavar="DURATION",
        help="Delete changes committed longer ago than this: 90s, 30m, 12h, 7d, 2w.")],
    db_url: DbUrl = None,
    as_json: JsonOut = False,
) -> None:
    """Delete old changes from the change log (retention). A subscriber whose cursor is
    older gets a gap event, never a silent skip."""
    from .. import schema
    from ..db import connect
    with reporting_errors(as_json):
        keep = parse_duration(older_than)
        with connect(db_url) as conn:
            result = schema.prune(conn, keep)
    if as_json:
        print_json({"ok": True, **result.as_dict()})
        return
    out.print(f"deleted {result.deleted} changes committed more than {older_than} ago; "
              f"the log now starts after {result.pruned_through or '0:0'}")


@app.command()
def stamp(
    db_url: DbUrl = None,
    once: Annotated[bool, typer.Option("--once", help="Run one round and exit (what a script calls).")] = False,
    idle_ms: Annotated[float, typer.Option(
        "--idle-ms", help="Pause between rounds once the log is quiet: the most a change after a quiet second "
                          "waits for a round.")] = 10.0,
    as_json: JsonOut = False,
) -> None:
    """Put new changes in commit order and push them: the stamper, on its own.

    Every supabase-push process that reads a database by SQL already runs one (one leads per
    database), and pg_cron can run it in the database; this command is for deployments that
    want it as a service of its own. It stands by while another process leads."""
    import asyncio

    from .._signals import stop_on_signals
    from ..changelog import read_head
    from ..changelog import stamp as stamp_once
    from ..db import connect
    from ..stamper import Stamper

    with reporting_errors(as_json):
        if once:
            with connect(db_url) as conn:
                stamped = stamp_once(conn)
                if stamped is None:
                    raise SchemaError("this database has no stamper (not installed, or an older schema)",
                                      hint="run `supabase-push apply`")
                last = str(read_head(conn))
            if as_json:
                print_json({"ok": True, "stamped": stamped, "last_cursor": last})
            else:
                out.print(f"stamped {stamped} transactions; the log ends at {last}")
            return
        url = settings_with(db_url).database_url
        assert url is not None  # connect() would have said
        stamper = Stamper(url, idle_ms=idle_ms)

        async def run() -> None:
            shown = None
            with stop_on_signals() as stop:
                async with stamper:
                    while not stop.is_set():
                        if stamper.state not in (shown, "starting"):
                            shown = stamper.state
                            if as_json:
                                print(json.dumps({"state": shown, "error": stamper.last_error}), flush=True)
                            else:
                                err.print(f"stamper: {shown}"
                                          + (f" ({stamper.last_error})" if stamper.last_error else ""))
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stop.wait(), 0.5)

        asyncio.run(run())
