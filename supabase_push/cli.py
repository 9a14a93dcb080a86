"""The ``supabase-push`` command line: a thin shell over :mod:`supabase_push.schema`.

Exit codes: 0 success; 1 the operation failed or ``verify`` found a problem;
2 bad usage or configuration (no database URL, malformed route, a payload that is not a JSON object,
credentials the server refused).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import logging
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import __version__
from .config import Settings
from .errors import AccessRefusedError, ConfigError, PayloadError, SchemaError, SupabasePushError

if TYPE_CHECKING:  # imported where used, so `supabase-push --help` stays quick
    from . import schema
    from .events import Cursor
    from .sinks import ForwardConfig
    from .subscribe import Reader

app = typer.Typer(
    name="supabase-push",
    help="Push position, trade and portfolio changes from Postgres/Supabase to the programs "
    "that watch them. Exit codes: 0 ok, 1 failed (or verify found a problem), 2 bad usage.",
    no_args_is_help=True,
    rich_markup_mode="markdown",  # a docstring's paragraphs are reflowed, not broken where the source wraps
    pretty_exceptions_enable=False,
    add_completion=False,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)

DbUrl = Annotated[
    str | None,
    typer.Option("--db-url", envvar="DATABASE_URL", show_envvar=True, show_default=False, metavar="URL",
                 help="Postgres URL: postgresql://user:pw@host/db"),
]
JsonOut = Annotated[bool, typer.Option("--json", help="Print one JSON document for scripts.")]
RestUrl = Annotated[
    str | None,
    typer.Option(envvar="SUPABASE_PUSH_REST_URL", show_envvar=True, show_default=False, metavar="URL",
                 help="PostgREST base URL for reading the change log (default <SUPABASE_URL>/rest/v1)."),
]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Print the SQL instead of running it.")]
PayloadOption = Annotated[str | None, typer.Option(
    "--data", "-d", show_default=False, help="The payload, a JSON object. Without it the payload is read from stdin.")]

STATUS_STYLE = {"ok": "green", "missing": "red", "drifted": "red", "warning": "yellow"}


def _version(value: bool) -> None:
    if value:
        out.print(f"supabase-push {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not verbose:  # the official client logs every failed attempt; ours says what matters once
        logging.getLogger("realtime").setLevel(logging.CRITICAL)


def _fail(exc: SupabasePushError, as_json: bool) -> NoReturn:
    code = 2 if isinstance(exc, ConfigError | PayloadError | AccessRefusedError) else 1
    if as_json:
        print(json.dumps({"ok": False, "error": exc.message, "hint": exc.hint,
                          "type": type(exc).__name__}))
    err.print(f"[red]error:[/red] {escape(exc.message)}", markup=True, soft_wrap=True)
    if exc.hint:  # escaped: "pip install 'supabase-push[relay]'" is not markup
        err.print(f"[dim]hint:[/dim] {escape(exc.hint)}", markup=True, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def _errors(as_json: bool) -> Iterator[None]:
    """One clear line and a hint for every error a user can hit, never a traceback."""
    try:
        yield
    except SupabasePushError as exc:
        _fail(exc, as_json)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def _route_options(tables: list[str] | None) -> list[schema.Route] | None:
    from . import schema
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
    from . import schema
    from .db import connect, describe_dsn
    with _errors(as_json):
        if broadcast not in schema.BROADCAST_MODES:
            raise ConfigError(f"unknown --broadcast {broadcast!r}",
                              hint=f"use one of {', '.join(schema.BROADCAST_MODES)}")
        options: dict[str, Any] = {
            "broadcast_mode": broadcast,
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
            _print_json({"ok": True, **result.__dict__})
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
    from . import schema
    from .db import connect
    with _errors(as_json), connect(db_url) as conn:
        report = schema.verify(conn)
    if as_json:
        _print_json(report.as_dict())
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
    from . import schema
    from .db import connect
    with _errors(as_json):
        if dry_run:
            print(schema.uninstall_sql())
            return
        if not yes:
            if not sys.stdin.isatty():
                raise ConfigError("uninstall deletes the change log and needs confirmation",
                                  hint="pass --yes")
            typer.confirm("Remove supabase-push triggers and its change log?", abort=True)
        from .local import footprint

        with connect(db_url) as conn:
            removed = schema.uninstall(conn)
            served = footprint.inspect(conn).recorded
    if as_json:
        _print_json({"ok": True, "removed": removed, "local_server_objects": served})
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
    from . import schema
    from .db import connect
    with _errors(as_json), connect(db_url) as conn:
        info = schema.status(conn)
    if as_json:
        _print_json(info.as_dict())
        return
    if not info.installed:
        out.print("supabase-push is [yellow]not installed[/yellow] (run supabase-push apply)")
        return
    grid = Table.grid(padding=(0, 2))
    rows: list[tuple[str, str]] = [
        ("schema version", str(info.schema_version)),
        ("installed", f"{info.installed_at} (updated {info.updated_at})"),
        ("broadcast", _push_path(info)),
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


def _push_path(info: schema.Status) -> str:
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
    from . import schema
    from .db import connect
    with _errors(as_json):
        keep = parse_duration(older_than)
        with connect(db_url) as conn:
            result = schema.prune(conn, keep)
    if as_json:
        _print_json({"ok": True, **result.as_dict()})
        return
    out.print(f"deleted {result.deleted} changes committed more than {older_than} ago; "
              f"the log now starts after {result.pruned_through or '0:0'}")


@app.command()
def stamp(
    db_url: DbUrl = None,
    once: Annotated[bool, typer.Option("--once", help="Run one round and exit (what a script calls).")] = False,
    idle_ms: Annotated[float, typer.Option("--idle-ms", help="Pause between rounds once the log is quiet.")] = 50.0,
    as_json: JsonOut = False,
) -> None:
    """Put new changes in commit order and push them: the stamper, on its own.

    Every supabase-push process that reads a database by SQL already runs one (one leads per
    database), and pg_cron can run it in the database; this command is for deployments that
    want it as a service of its own. It stands by while another process leads."""
    import asyncio
    import signal

    from .changelog import read_head
    from .changelog import stamp as stamp_once
    from .db import connect
    from .stamper import Stamper

    with _errors(as_json):
        if once:
            with connect(db_url) as conn:
                stamped = stamp_once(conn)
                if stamped is None:
                    raise SchemaError("this database has no stamper (not installed, or an older schema)",
                                      hint="run `supabase-push apply`")
                last = str(read_head(conn))
            if as_json:
                _print_json({"ok": True, "stamped": stamped, "last_cursor": last})
            else:
                out.print(f"stamped {stamped} transactions; the log ends at {last}")
            return
        url = _settings(db_url).database_url
        assert url is not None  # connect() would have said
        stamper = Stamper(url, idle_ms=idle_ms)

        async def run() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            shown = None
            async with stamper:
                while not stop.is_set():
                    if stamper.state not in (shown, "starting"):
                        shown = stamper.state
                        if as_json:
                            print(json.dumps({"state": shown, "error": stamper.last_error}), flush=True)
                        else:
                            err.print(f"stamper: {shown}" + (f" ({stamper.last_error})" if stamper.last_error else ""))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 0.5)

        asyncio.run(run())


@app.command()
def demo(
    duration: Annotated[float | None, typer.Option(
        help="Trade for this many seconds, then stop and report (default: until Ctrl-C on a terminal, "
        "10 s otherwise).", show_default=False)] = None,
    supabase: Annotated[bool, typer.Option(
        "--supabase", help="Run against your project (SUPABASE_URL, SUPABASE_SERVICE_ROLE_KEY, DATABASE_URL; "
        "the triggers must be applied). Its rows use account_id 'supabase-push-demo' and are deleted at the end.")
    ] = False,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Headless: no dashboard, print a summary (events per table, latency, lost) as JSON.")] = False,
) -> None:
    """See it all work, with nothing configured: a throwaway Postgres, the local Realtime server,
    a simulated trading backend, and a live dashboard of three subscribers (Realtime, LISTEN,
    polling). Exit 0 only if no subscriber lost or repeated a change."""
    from .demo import run_demo

    with _errors(as_json):
        summary = run_demo(duration=duration, live=not as_json and out.is_terminal, supabase=supabase,
                           say=_say(as_json), console=out)
    if as_json:
        _print_json(summary)
    if not summary["ok"]:
        raise typer.Exit(1)


@app.command()
def serve(
    db_url: Annotated[str | None, typer.Option(
        "--db-url", show_default=False,
        help="Serve this database instead of a throwaway one. DATABASE_URL is not read here: serve never "
             "touches your database unless you name it.")] = None,
    host: Annotated[str, typer.Option(help="Interface to bind. Keep 127.0.0.1 unless you know why.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (54321 is the Supabase CLI's; 0 picks a free one).")] = 54321,
    jwt_secret: Annotated[str | None, typer.Option(
        envvar="SUPABASE_PUSH_JWT_SECRET", show_envvar=True, show_default=False,
        help="HS256 secret for keys and access tokens (default: the Supabase CLI's local secret).")] = None,
    apply_triggers: Annotated[bool, typer.Option(
        "--apply", help="Also install the trigger SQL (always done on the embedded database).")] = False,
    install_realtime: Annotated[bool, typer.Option(
        "--install-realtime", help="With --db-url: add Supabase's database side (realtime schema, roles, "
        "publications, auth helpers) where it is missing. Triggers in broadcast mode auto then push through "
        "realtime.send instead of NOTIFY. Without it, serve refuses a database that lacks them.")] = False,
    clean: Annotated[bool, typer.Option(
        "--clean", help="With --db-url: remove what serve --install-realtime added there, and exit.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON line (URLs and keys) once serving.")] = False,
    as_env: Annotated[bool, typer.Option(
        "--env", help="Print `export NAME=value` lines (SUPABASE_URL, the keys, DATABASE_URL) once serving, "
                      "for a shell or a test to source, like `supabase status -o env`.")] = False,
) -> None:
    """Run a local Supabase (Realtime, REST, Auth) for the official clients. FOR DEVELOPMENT AND TESTS ONLY.

    Websockets at /realtime/v1/websocket, REST broadcast at /realtime/v1/api/broadcast,
    postgres_changes by logical decoding, database broadcast through realtime.send();
    /rest/v1 through a PostgREST it starts (where one is found), /auth/v1 with users in auth.users.
    Without --db-url it starts a throwaway Postgres with the trading tables and triggers.
    On your own database it adds nothing unless --install-realtime says so (--clean takes it back).
    It prints the project URL and its keys: anon and service_role JWTs, and the new-style
    sb_publishable_ and sb_secret_ keys that stand for the same roles. Stop it with Ctrl-C.
    """
    import asyncio
    import os
    import signal
    from contextlib import ExitStack

    import psycopg

    from . import schema
    from ._sql import REFERENCE_TABLES, read_sql
    from .db import connect, describe_dsn, map_error
    from .embedded import LocalPostgres
    from .local import DEV_SECRET, LocalRealtime, ServerConfig, footprint
    from .local.rest import SUPABASE_GRANTS

    say = err.print if as_env else _say(as_json)  # --env: stdout holds only the export lines
    if clean:
        with _errors(as_json):
            _serve_clean(db_url, as_json)
        return
    shown_db: str | None = None  # a throwaway cluster's URL is printed whole: it is the way in
    if importlib.util.find_spec("aiohttp") is None:
        _fail(ConfigError("the local server needs aiohttp",
                          hint="pip install 'supabase-push[server]'"), as_json)
    added: list[str] = []
    with _errors(as_json), ExitStack() as stack:
        if db_url is None:
            if os.environ.get("DATABASE_URL"):
                say("[dim]DATABASE_URL is set, but serve uses a throwaway Postgres unless --db-url names one[/dim]")
            pg = stack.enter_context(LocalPostgres())
            db_url, apply_triggers = pg.dsn, True
            shown_db = pg.dsn
            with connect(db_url) as conn:
                conn.execute(read_sql(REFERENCE_TABLES).encode())
                footprint.install(conn)  # first, so the triggers use realtime.send
                conn.execute(SUPABASE_GRANTS)  # as a new project has them: RLS decides, through /rest/v1
            say(f"[green]✓[/green] throwaway Postgres {pg.version} with the trading tables")
            install = True
        else:
            with connect(db_url) as conn:
                added, install = _serve_prepare(conn, db_url, install_realtime, say)
        if apply_triggers:
            with connect(db_url) as conn:
                schema.apply(conn)
            say("[green]✓[/green] triggers installed (database broadcast to position-updates, "
                "trade-updates, portfolio-updates)")
        config = ServerConfig(host=host, port=port, jwt_secret=jwt_secret or DEV_SECRET, install=install)
        server = LocalRealtime(db_url, config)

        async def run() -> None:
            try:
                await server.start()
            except psycopg.Error as exc:
                raise map_error(exc, db_url) from None
            except OSError as exc:
                raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}",
                                  hint="pick another --port, or 0 for a free one") from None
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            info = {"url": server.url, "realtime_url": server.realtime_url,
                    "rest_url": f"{server.url}/rest/v1" if server.postgrest is not None else None,
                    "auth_url": f"{server.url}/auth/v1", "anon_key": server.anon_key,
                    "service_role_key": server.service_role_key, "publishable_key": server.publishable_key,
                    "secret_key": server.secret_key,
                    "database": shown_db or describe_dsn(db_url or ""), "added": added}
            if as_json:
                print(json.dumps(info), flush=True)  # one line: scripts read it as the ready signal
            elif as_env:
                print(_env_lines(info, shown_db), flush=True)
            else:
                say(f"[green]✓[/green] local Realtime server on {server.url} [dim](development only)[/dim]")
                say(f"  realtime   {server.realtime_url}/websocket")
                say(f"  rest       {info['rest_url']}" if info["rest_url"] else
                    f"  rest       [yellow]unavailable[/yellow]: {server.rest_unavailable}")
                say(f"  auth       {info['auth_url']}")
                say(f"  database   {info['database']}")
                say(f"  anon key   {server.anon_key}")
                say(f"  service    {server.service_role_key}")
                say(f"  publishable {server.publishable_key}")
                say(f"  secret     {server.secret_key}")
                say("  Ctrl-C to stop")
            try:
                await stop.wait()
            finally:
                await server.stop()

        asyncio.run(run())


def _env_lines(info: dict[str, Any], database_url: str | None) -> str:
    """``export`` lines a shell can source; values quoted for sh."""
    import shlex

    names = {"SUPABASE_URL": info["url"], "SUPABASE_ANON_KEY": info["anon_key"],
             "SUPABASE_SERVICE_ROLE_KEY": info["service_role_key"],
             "SUPABASE_PUBLISHABLE_KEY": info["publishable_key"], "SUPABASE_SECRET_KEY": info["secret_key"]}
    if database_url:
        names["DATABASE_URL"] = database_url
    return "\n".join(f"export {name}={shlex.quote(value)}" for name, value in names.items())


def _serve_prepare(conn: Any, db_url: str, install_realtime: bool,
                   say: Callable[[str], None]) -> tuple[list[str], bool]:
    """On a database serve did not create: what it may add (only with --install-realtime), and whether
    the server runs its script at start (only where the realtime objects are its own)."""
    from . import schema
    from .db import describe_dsn
    from .local import footprint

    found = footprint.inspect(conn)
    if found.realtime and not found.ours:
        say("[dim]this database has its own realtime schema (hosted Supabase?): serving it as it is[/dim]")
        return [], False
    if found.ours and found.realtime:
        return [], True  # its own objects: the server's script only refreshes them
    before = schema.status(conn)
    moves = before.installed and before.broadcast_mode == "auto" and "notify" in before.broadcast_path
    consequence = (" Its triggers (broadcast mode auto) would then push through realtime.send instead of NOTIFY: "
                   "LISTEN clients would hear nothing until `supabase-push serve --clean`." if moves else "")
    if not install_realtime:
        try:
            would = footprint.describe(footprint.plan(conn))
        except SupabasePushError as exc:  # e.g. a role that may not create roles: say what, not why not
            would = f"the realtime schema, roles and publications (listing them failed: {exc.message})"
        raise ConfigError(
            f"{describe_dsn(db_url)} has no realtime schema; serving it would add {would}.{consequence}",
            hint="pass --install-realtime to add them (`supabase-push serve --clean --db-url ...` removes them), "
                 "or leave out --db-url to serve a throwaway database")
    added = footprint.install(conn)
    say(f"[yellow]![/yellow] added to {escape(describe_dsn(db_url))}: {escape(footprint.describe(added) or 'nothing')}")
    if moves:
        say("[yellow]![/yellow] triggers in broadcast mode auto now push through realtime.send, not NOTIFY "
            "(supabase-push verify reports it); `supabase-push serve --clean --db-url ...` undoes both")
    return added, True


def _serve_clean(db_url: str | None, as_json: bool) -> None:
    from . import schema
    from .db import connect, describe_dsn
    from .local import footprint

    if db_url is None:
        raise ConfigError("--clean needs --db-url", hint="name the database serve --install-realtime was run on")
    with connect(db_url) as conn:
        removals = footprint.clean(conn)
        info = schema.status(conn)
    if as_json:
        _print_json({"ok": True, "removed": [r.name for r in removals if r.removed],
                     "kept": [{"object": r.name, "why": r.detail} for r in removals if not r.removed],
                     "push_path": info.broadcast_path if info.installed else None})
        return
    if not removals:
        out.print(f"nothing to remove: supabase-push serve added nothing to {escape(describe_dsn(db_url))}")
        return
    for removal in removals:
        mark = "[green]✓[/green] removed" if removal.removed else "[yellow]![/yellow]"
        detail = f" [dim]{escape(removal.detail)}[/dim]" if removal.detail else ""
        out.print(f"{mark} {escape(removal.name)}{detail}")
    if info.installed:
        out.print(f"triggers push through: {_push_path(info)}")


@app.command()
def doctor(
    db_url: DbUrl = None,
    rest_url: RestUrl = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each service.")] = 5.0,
    as_json: JsonOut = False,
) -> None:
    """Check the configuration and, per transport (database, LISTEN, Realtime, PostgREST), what
    works and what to fix. Exit 1 if anything fails; warnings alone exit 0. Never prints a key."""
    import asyncio

    from .doctor import diagnose

    with _errors(as_json):
        settings = _settings(db_url)
        report = asyncio.run(diagnose(settings, rest_url=rest_url, timeout=timeout))
    if as_json:
        _print_json(report.as_dict())
    else:
        style = {"ok": "green", "warn": "yellow", "fail": "red", "skip": "dim"}
        table = Table(show_header=True, header_style="bold", expand=False)
        for column in ("area", "check", "", "detail"):
            table.add_column(column, overflow="fold")
        fixes = [f for f in report.findings if f.fix]
        for finding in report.findings:
            detail = escape(finding.detail)
            if finding.fix:
                detail += f" [dim](fix {fixes.index(finding) + 1} below)[/dim]"
            table.add_row(finding.area, finding.check, f"[{style[finding.status]}]{finding.status}[/]", detail)
        out.print(table)
        for number, finding in enumerate(fixes, 1):  # whole lines: a command to copy is never cut or folded
            out.print(f"fix {number} ({escape(finding.check)}): {escape(finding.fix or '')}", soft_wrap=True)
        failed = sum(f.status == "fail" for f in report.findings)
        warned = sum(f.status == "warn" for f in report.findings)
        out.print(f"[{'red' if failed else 'green'}]{failed} failed[/], {warned} warning(s)")
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def tail(
    topic: Annotated[list[str] | None, typer.Option(
        "--topic", "-t", show_default=False,
        help="Topic to follow (repeatable); default: position-updates, trade-updates, portfolio-updates.")] = None,
    row_filter: Annotated[list[str] | None, typer.Option(
        "--filter", "-f", metavar="COLUMN=OP.VALUE", show_default=False,
        help="Only rows that pass, e.g. symbol=eq.SPY or user_id=in.(1,2) (repeatable: all must pass).")] = None,
    transport: Annotated[str, typer.Option(
        help="Push transport: auto (Realtime if SUPABASE_URL and a key are set, else LISTEN), "
        "realtime, listen, or poll (none).")] = "auto",
    reader: Annotated[str, typer.Option(
        help="How to read the change log: auto (SQL with a database URL, else PostgREST), sql, rest.")] = "auto",
    rest_url: RestUrl = None,
    start: Annotated[str | None, typer.Option(
        "--from", metavar="CURSOR", show_default=False,
        help="Start after this cursor (seq:id), 'now' (the newest change), or 'snapshot' (the current rows of the "
        "topics' tables as SNAPSHOT events, then every change after them); default 0:0, the whole log.")] = None,
    cursor_file: Annotated[str | None, typer.Option(
        help="Keep the cursor in this file: a restarted tail resumes where it stopped.")] = None,
    count: Annotated[int | None, typer.Option(
        help="Stop after this many events (exit 1 if --timeout passes first).")] = None,
    timeout: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
    poll_interval: Annotated[float, typer.Option(help="Seconds between reads while polling.")] = 1.0,
    stats_every: Annotated[float, typer.Option(
        help="Print the subscriber's state on stderr every this many seconds (0: only at the end).")] = 0.0,
    db_url: DbUrl = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="One JSON object per event on stdout; the state as JSON lines on stderr.")] = False,
) -> None:
    """Print live changes, exactly once and in order, from whatever is configured.

    Uses SUPABASE_URL with SUPABASE_SERVICE_ROLE_KEY (Realtime) and/or DATABASE_URL
    (LISTEN/NOTIFY and SQL reads); falls back to polling the change log when push is down.
    """
    import asyncio

    from .subscribe import Subscriber
    from .tail import run_tail

    with _errors(as_json):
        settings = _settings(db_url)
        subscriber = Subscriber.from_settings(
            settings, topics=topic or None, transport=transport, reader=reader, rest_url=rest_url,
            filters=row_filter or (), start=start, cursor_store=cursor_file, poll_interval=poll_interval,
            stop_on_refusal=True)
        code = asyncio.run(run_tail(subscriber, as_json=as_json, count=count, timeout=timeout,
                                    stats_every=stats_every))
    raise typer.Exit(code)


@app.command()
def relay(
    db_url: DbUrl = None,
    rest_url: RestUrl = None,
    host: Annotated[str, typer.Option(help="Interface to bind (0.0.0.0 behind your proxy).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0 picks a free one).")] = 8787,
    jwt_secret: Annotated[str | None, typer.Option(
        envvar="SUPABASE_JWT_SECRET", show_envvar=True, show_default=False,
        help="HS256 secret that signs your users' tokens (Supabase: Settings > API > JWT secret).")] = None,
    jwks_url: Annotated[str | None, typer.Option(
        envvar="SUPABASE_JWKS_URL", show_envvar=True, show_default=False,
        help="Or verify RS256/ES256 tokens with the keys at this URL "
             "(Supabase: <project>/auth/v1/.well-known/jwks.json).")] = None,
    audience: Annotated[str | None, typer.Option(
        help="Require this 'aud'. Default: no 'aud' (Supabase's API keys) or 'authenticated' (its users).")] = None,
    topic: Annotated[list[str] | None, typer.Option(
        "--topic", help="A topic to serve (repeat; default: the three trading topics).")] = None,
    owner_column: Annotated[str, typer.Option(
        help="Users see rows whose column equals their token's sub.")] = "user_id",
    shared_topic: Annotated[list[str] | None, typer.Option(
        "--shared-topic", help="A topic every user sees whole, e.g. market data (repeat).")] = None,
    tier: Annotated[list[str] | None, typer.Option(
        "--tier", help="Limit a topic to tiers: 'premium-signals=pro,elite' (repeat).")] = None,
    tier_claim: Annotated[str, typer.Option(help="Dotted path of the tier in the token's claims.")] =
        "app_metadata.tier",
    max_per_user: Annotated[int, typer.Option(help="Streams one user may hold open at once.")] = 5,
    buffer: Annotated[int, typer.Option(help="Unsent events after which a slow stream is cut off.")] = 1000,
    replay: Annotated[int, typer.Option(help="Newest events kept in memory for reconnecting browsers.")] = 10_000,
    heartbeat: Annotated[float, typer.Option(help="Seconds between heartbeat comments.")] = 15.0,
    allow_origin: Annotated[list[str] | None, typer.Option(
        "--allow-origin", help="A web origin allowed to connect (CORS; repeat, or '*').")] = None,
    transport: Annotated[str, typer.Option(help="How the relay's subscriber is pushed to: auto, realtime, "
                                                "listen or poll.")] = "auto",
    reader: Annotated[str, typer.Option(help="How it reads the change log: auto, sql or rest.")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON line (the URL) once serving.")] = False,
) -> None:
    """Serve changes to browsers over Server-Sent Events: GET /events?topics=..., /stats, /healthz.

    One subscriber for the whole process. Each user (a JWT) sees only their rows and the
    topics their tier allows; a browser that reconnects resumes from its Last-Event-ID.
    """
    import asyncio
    import signal

    from .events import DEFAULT_ROUTES

    say = _say(as_json)
    with _errors(as_json):
        try:
            from .relay import Authenticator, Policy, RelayConfig, create_app
            from .relay.server import RelayServer
        except ImportError as exc:
            raise ConfigError(f"the relay needs {(exc.name or 'its extra').split('.')[0]}, which is not installed",
                              hint="pip install 'supabase-push[relay]'") from None
        policy = Policy(topics=topic or list(DEFAULT_ROUTES.values()), owner_column=owner_column,
                        shared_topics=shared_topic or (), topic_tiers=_parse_tiers(tier or []))
        config = RelayConfig(settings=_settings(db_url), policy=policy, heartbeat=heartbeat, buffer=buffer,
                             ring_size=replay, max_per_user=max_per_user, allow_origins=allow_origin or (),
                             transport=transport, reader=reader, rest_url=rest_url,
                             authenticator=Authenticator(secret=jwt_secret, jwks_url=jwks_url, audience=audience,
                                                         tier_claim=tier_claim))

        async def run() -> None:
            server = await RelayServer(create_app(config), host=host, port=port).start()
            if as_json:
                print(json.dumps({"url": server.url, "events": f"{server.url}/events",
                                  "topics": list(policy.topics)}), flush=True)
            else:
                say(f"[green]✓[/green] relay on {server.url}/events serving {', '.join(policy.topics)}")
                say("  Ctrl-C to stop")
            await server.wait()

        # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal to the handler it found:
        # make that one a clean exit rather than a KeyboardInterrupt traceback or death by signal
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _exit_cleanly)
        asyncio.run(run())


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _parse_tiers(specs: list[str]) -> dict[str, list[str]]:
    tiers: dict[str, list[str]] = {}
    for spec in specs:
        topic_name, sep, names = spec.partition("=")
        allowed = [name.strip() for name in names.split(",") if name.strip()]
        if not sep or not topic_name or not allowed:
            raise ConfigError(f"not a tier rule: {spec!r}", hint="write it as topic=tier1,tier2")
        tiers[topic_name] = allowed
    return tiers


@app.command()
def forward(
    config_file: Annotated[str, typer.Option(
        "--config", "-c", envvar="SUPABASE_PUSH_ALERTS", show_envvar=True,
        help="The TOML file of sinks and rules (docs/alerts.md).")],
    db_url: DbUrl = None,
    rest_url: RestUrl = None,
    transport: Annotated[str, typer.Option(help="auto, realtime, listen or poll.")] = "auto",
    reader: Annotated[str, typer.Option(help="How the change log is read: auto, sql or rest.")] = "auto",
    start: Annotated[str | None, typer.Option(
        "--from", help="Start after this cursor on a first run (default: now; later runs resume).")] = None,
    check: Annotated[bool, typer.Option("--check", help="Only check the file and print the rules and sinks.")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Run the rules over the change log from --from (default 0:0) to now and print the "
                          "alerts they would send; sends nothing, saves nothing.")] = False,
    replay: Annotated[bool, typer.Option(
        "--replay-dead-letters", help="Send the dead letters again, then exit (1 if any fail again).")] = False,
    grace: Annotated[float, typer.Option(help="Seconds queued alerts get to go out when stopping.")] = 5.0,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per alert sent or dead-lettered.")] = False,
) -> None:
    """Forward changes as alerts: rules (a condition, a priority, a message) to Slack, email and webhooks.

    Rate-limited per sink, retried with backoff; what still fails goes to a dead-letter file,
    so an outage of a sink loses nothing. Stop with Ctrl-C: it resumes where it left off.
    """
    import asyncio
    import signal

    from .events import Cursor
    from .sinks import Alert, Forwarder, load_config, replay_dead_letters
    from .subscribe import Subscriber, reader_for

    def report(sink: str, alert: Alert, outcome: str) -> None:
        if as_json:
            print(json.dumps({"sink": sink, "rule": alert.rule, "priority": str(alert.priority), "key": alert.key,
                              "outcome": outcome, "message": alert.message}), flush=True)
        else:
            style = "green" if outcome == "sent" else "red"
            out.print(f"[{style}]{outcome:<13}[/{style}] {alert.priority!s:<8} {escape(alert.rule)} → "
                      f"{escape(sink)}  [dim]{alert.event.cursor}[/dim]  {escape(alert.message)}")

    with _errors(as_json):
        config = load_config(config_file)
        if check:
            _print_forward_config(config, as_json)
            return
        if dry_run:
            try:
                first = Cursor.parse(start or "0:0")
            except ValueError as exc:
                raise ConfigError(str(exc), hint="--from takes a cursor (seq:id) with --dry-run") from None
            asyncio.run(_forward_dry_run(config, reader_for(_settings(db_url), reader, rest_url=rest_url),
                                         first, as_json))
            return
        if replay:
            counts = asyncio.run(replay_dead_letters(config, report))
            if as_json:
                print(json.dumps({"final": True, **counts}))
            else:
                err.print(f"replayed {counts['replayed']}: {counts['sent']} sent, {counts['dead-lettered']} "
                          f"dead-lettered again ({config.dead_letters.path})")
            raise typer.Exit(1 if counts["dead-lettered"] else 0)
        resume = Forwarder.start_cursor(config)
        subscriber = Subscriber.from_settings(_settings(db_url), topics=config.topics, transport=transport,
                                              reader=reader, rest_url=rest_url, start=resume or start or "now")
        forwarder = Forwarder(config, subscriber, on_outcome=report)

        async def run() -> None:
            task = asyncio.create_task(forwarder.run())
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            if not as_json:
                err.print(f"[green]✓[/green] forwarding {len(config.rules)} rule(s) to "
                          f"{', '.join(w.sink.describe() for w in config.workers)}"
                          f" from {resume or start or 'now'}; Ctrl-C to stop")
            await asyncio.wait([task, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                await task  # the subscriber failed: its error is the exit
                return
            await forwarder.drain(grace)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        asyncio.run(run())
        stats = forwarder.stats()
        if as_json:
            print(json.dumps({"final": True, **stats}))
        else:
            sinks = ", ".join(f"{name} {s['sent']} sent/{s['dead_lettered']} dead"
                              for name, s in stats["sinks"].items())
            err.print(f"stopped at {stats['cursor']}: {stats['events']} events, {stats['alerts']} alerts; {sinks}")


async def _forward_dry_run(config: ForwardConfig, reader: Reader, start: Cursor, as_json: bool) -> None:
    from .sinks import dry_run

    count = 0
    try:
        async for alert, sinks in dry_run(config, reader, start):
            count += 1
            if as_json:
                print(json.dumps({"rule": alert.rule, "priority": str(alert.priority), "key": alert.key,
                                  "sinks": sinks, "message": alert.message}), flush=True)
            else:
                out.print(f"[yellow]would send[/yellow] {alert.priority!s:<8} {escape(alert.rule)} → "
                          f"{escape(', '.join(sinks) or '(no sink takes it)')}  [dim]{alert.event.cursor}[/dim]  "
                          f"{escape(alert.message)}")
    finally:
        await reader.close()
    if not as_json:
        err.print(f"{count} alert(s) from {start} to now; nothing was sent")


def _print_forward_config(config: ForwardConfig, as_json: bool) -> None:
    rules = [{"name": r.name, "priority": str(r.priority), "when": r.when.source if r.when else None,
              "sinks": list(r.sinks) or "all"} for r in config.rules]
    sinks = [{"name": w.sink.name, "sink": w.sink.describe(), "min_priority": str(w.min_priority),
              "rate": str(w.rate) if w.rate else None} for w in config.workers]
    if as_json:
        _print_json({"rules": rules, "sinks": sinks, "dead_letter_file": str(config.dead_letters.path),
                     "cursor_file": str(config.cursor_file)})
        return
    for worker in config.workers:
        out.print(f"[green]✓[/green] sink {escape(worker.sink.describe())} (priority ≥ {worker.min_priority}, "
                  f"rate {worker.rate or 'unlimited'})")
    for rule in config.rules:
        out.print(f"[green]✓[/green] rule {escape(repr(rule.name))} ({rule.priority}) when "
                  f"{escape(rule.when.source if rule.when else 'always')} → {escape(', '.join(rule.sinks) or 'all')}")
    out.print(escape(f"  dead letters: {config.dead_letters.path}\n  cursor:       {config.cursor_file}"))


@app.command("broadcast")
def broadcast_command(
    topic: Annotated[str, typer.Argument(help="Topic, e.g. position-updates.")],
    event: Annotated[str, typer.Argument(help="Event name, e.g. position_update.")],
    data: PayloadOption = None,
    private: Annotated[bool | None, typer.Option(
        "--private/--public", show_default=False,
        help="Private (RLS-authorised) or public topic; default SUPABASE_PUSH_PRIVATE, else private.")] = None,
    backend: Annotated[str | None, typer.Option(
        envvar="SUPABASE_PUSH_BROADCAST", show_envvar=True, show_default=False,
        help="rest, websocket or notify; default: REST if SUPABASE_URL and a key are set, else NOTIFY.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the server, per attempt.")] = 5.0,
    as_json: JsonOut = False,
) -> None:
    """Send one broadcast message, as a backend service would.

    Reads SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY (Supabase REST, or the local server
    from `supabase-push serve`), or DATABASE_URL (Postgres NOTIFY). Keys are read from the
    environment only, never from the command line.
    """
    import asyncio
    import time

    from .broadcast import Broadcaster, RetryPolicy

    with _errors(as_json):
        payload = _payload(data, example='{"symbol": "SPY"}')
        settings = Settings.from_env()
        if backend:
            if backend.lower() not in ("auto", "rest", "websocket", "notify"):
                raise ConfigError(f"--backend {backend!r} is not one of rest, websocket, notify")
            settings = dataclasses.replace(settings, broadcast_backend=backend.lower())
        broadcaster = Broadcaster.from_settings(settings, timeout=timeout, retry=RetryPolicy(attempts=3))
        started = time.perf_counter()

        async def send() -> None:
            async with broadcaster:
                await broadcaster.broadcast(topic, event, payload, private=private)

        asyncio.run(send())
        elapsed_ms = (time.perf_counter() - started) * 1000
        realtime = broadcaster.backend.name in ("rest", "websocket")  # NOTIFY channels are neither
        is_private = (settings.private if private is None else private) if realtime else None
        size = len(json.dumps(payload, separators=(",", ":")).encode())
    if as_json:
        _print_json({"ok": True, "topic": topic, "event": event, "private": is_private,
                     "backend": broadcaster.backend.name, "bytes": size, "ms": round(elapsed_ms, 1)})
    else:
        scope = "" if is_private is None else (", private" if is_private else ", public")
        out.print(f"[green]✓[/green] sent {escape(topic)}/{escape(event)} ({size:,} bytes{scope}) through "
                  f"{escape(broadcaster.backend.describe())} in {elapsed_ms:.1f} ms")


@app.command("publish")
def publish_command(
    topic: Annotated[str, typer.Argument(help="A routed table's topic, or one declared with apply --event-topic.")],
    event: Annotated[str, typer.Argument(help="The event's name, e.g. risk-limit.")],
    data: PayloadOption = None,
    key: Annotated[str | None, typer.Option(
        "--key", "-k", show_default=False,
        help="Idempotency key: publishing the same key and event again adds nothing (safe to retry).")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the server, per attempt.")] = 10.0,
    as_json: JsonOut = False,
) -> None:
    """Publish a durable event: appended to the change log, delivered to every subscriber exactly once.

    Unlike `broadcast` (at most once), the event is ordered with row changes, pushed, and read
    by cursor by a subscriber that was away. Goes through DATABASE_URL, else PostgREST at
    SUPABASE_URL with SUPABASE_SERVICE_ROLE_KEY (read from the environment only).
    """
    import asyncio
    import time

    from .broadcast import Broadcaster, NullBackend, RetryPolicy, publisher_from_settings
    from .broadcast.publishers import NOT_CONFIGURED

    with _errors(as_json):
        payload = _payload(data, example='{"limit": 5000}')
        publisher = publisher_from_settings(Settings.from_env(), timeout=timeout)
        if publisher is None:
            raise NOT_CONFIGURED
        broadcaster = Broadcaster(NullBackend("publish only"), publisher=publisher, retry=RetryPolicy(attempts=3))
        started = time.perf_counter()

        async def send() -> int:
            try:  # not started: nothing is broadcast, so nothing says broadcasts are dropped
                return await broadcaster.publish(topic, event, payload, key=key)
            finally:
                await broadcaster.close()

        change_id = asyncio.run(send())
        elapsed_ms = (time.perf_counter() - started) * 1000
    if as_json:
        _print_json({"ok": True, "topic": topic, "event": event, "key": key, "id": change_id,
                     "via": publisher.describe(), "ms": round(elapsed_ms, 1)})
    else:
        keyed = f", key {escape(key)}" if key else ""
        out.print(f"[green]✓[/green] published {escape(topic)}/{escape(event)} as change {change_id}{keyed} through "
                  f"{escape(publisher.describe())} in {elapsed_ms:.1f} ms")


def _payload(data: str | None, *, example: str) -> Any:
    """``--data``, else stdin, parsed as JSON (its shape is checked where it is sent)."""
    raw = data if data is not None else _read_stdin()
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"the payload is not JSON: {exc}", hint=f"e.g. --data '{example}'") from None


def _read_stdin() -> str:
    if sys.stdin.isatty():
        raise ConfigError("no payload", hint="""pass --data '{"key": "value"}' or pipe JSON to stdin""")
    return sys.stdin.read()


def _settings(db_url: str | None) -> Settings:
    """The environment's settings, with ``--db-url`` in place of DATABASE_URL."""
    settings = Settings.from_env()
    return dataclasses.replace(settings, database_url=db_url) if db_url else settings


def _say(quiet: bool) -> Callable[[str], None]:
    return (lambda _text: None) if quiet else (lambda text: out.print(text))


_METAVARS = {"str": "TEXT", "int": "INTEGER", "float": "FLOAT"}


def _conventional_help(command: Any) -> None:
    """Typer's conventions in --help (``--json``, ``-t TABLE=TOPIC``, ``--port INTEGER``, ``TOPIC``): newer
    Typer releases label every parameter with its Python type instead (``--json <bool>``, ``<list[str]>``)."""
    for sub in getattr(command, "commands", {}).values():
        _conventional_help(sub)
    help_option = command.get_help_option(typer.Context(command))  # made once and kept: label it too
    for param in [*command.params, *([help_option] if help_option is not None else [])]:
        if param.metavar is not None or not hasattr(param, "bare_type"):
            continue  # chosen by hand, or a Typer that already labels parameters the classic way
        if getattr(param, "is_flag", False):
            param.metavar = ""
        elif isinstance(param, typer.core.TyperArgument):
            param.metavar = param.name.upper()
        else:
            bare = param.bare_type().removeprefix("list[").removesuffix("]")
            param.metavar = _METAVARS.get(bare, bare.upper())


def main() -> None:
    command = typer.main.get_command(app)
    _conventional_help(command)
    command(prog_name="supabase-push")
