"""A local stack to try things on: demo, serve."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from ..errors import ConfigError, SupabasePushError
from ._app import (
    app,
    err,
    fail,
    out,
    print_json,
    reporting_errors,
    sayer,
)
from .database import push_path

if TYPE_CHECKING:
    from ..local.stack import LocalStack


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
    from ..demo import run_demo

    with reporting_errors(as_json):
        summary = run_demo(duration=duration, live=not as_json and out.is_terminal, supabase=supabase,
                           say=sayer(as_json), console=out)
    if as_json:
        print_json(summary)
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

    import psycopg

    from .. import schema
    from .._signals import stop_on_signals
    from ..db import connect, map_error
    from ..local import DEV_SECRET, ServerConfig
    from ..local.stack import LocalStack, StackSettings

    say = err.print if as_env else sayer(as_json)  # --env: stdout holds only the export lines
    if clean:
        with reporting_errors(as_json):
            _serve_clean(db_url, as_json)
        return
    if importlib.util.find_spec("aiohttp") is None:
        fail(ConfigError("the local server needs aiohttp",
                         hint="pip install 'supabase-push[server]'"), as_json)
    added: list[str] = []
    install = True
    with reporting_errors(as_json):
        if db_url is None:
            if os.environ.get("DATABASE_URL"):
                say("[dim]DATABASE_URL is set, but serve uses a throwaway Postgres unless --db-url names one[/dim]")
        else:
            with connect(db_url) as conn:
                added, install = _serve_prepare(conn, db_url, install_realtime, say)
            if apply_triggers:
                with connect(db_url) as conn:
                    schema.apply(conn)
                say("[green]✓[/green] triggers installed (database broadcast to position-updates, "
                    "trade-updates, portfolio-updates)")
        config = ServerConfig(host=host, port=port, jwt_secret=jwt_secret or DEV_SECRET, install=install)
        stack = LocalStack(StackSettings(server=config), database_url=db_url)

        async def run() -> None:
            try:
                await stack.start()
            except psycopg.Error as exc:
                raise map_error(exc, db_url) from None
            except OSError as exc:
                raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}",
                                  hint="pick another --port, or 0 for a free one") from None
            try:
                with stop_on_signals() as stop:
                    _announce(stack, added, as_json=as_json, as_env=as_env, say=say)
                    await stop.wait()
            finally:
                await stack.stop()

        asyncio.run(run())


def _announce(stack: LocalStack, added: list[str], *, as_json: bool, as_env: bool,
              say: Callable[[str], None]) -> None:
    """What serve prints once it serves: the URLs and keys (one JSON line, export lines, or text)."""
    from ..db import describe_dsn

    server = stack.server
    assert server is not None
    shown_db = stack.postgres.dsn if stack.postgres else None  # a throwaway cluster's URL is the way in: whole
    if stack.postgres is not None:
        say(f"[green]✓[/green] throwaway Postgres {stack.postgres.version} with the trading tables and the "
            "triggers (database broadcast to position-updates, trade-updates, portfolio-updates)")
    info = {"url": server.url, "realtime_url": server.realtime_url,
            "rest_url": f"{server.url}/rest/v1" if server.postgrest is not None else None,
            "auth_url": f"{server.url}/auth/v1", "anon_key": server.anon_key,
            "service_role_key": server.service_role_key, "publishable_key": server.publishable_key,
            "secret_key": server.secret_key,
            "database": shown_db or describe_dsn(stack.database_url), "added": added}
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
    from .. import schema
    from ..db import describe_dsn
    from ..local import footprint

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
    from .. import schema
    from ..db import connect, describe_dsn
    from ..local import footprint

    if db_url is None:
        raise ConfigError("--clean needs --db-url", hint="name the database serve --install-realtime was run on")
    with connect(db_url) as conn:
        removals = footprint.clean(conn)
        info = schema.status(conn)
    if as_json:
        print_json({"ok": True, "removed": [r.name for r in removals if r.removed],
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
        out.print(f"triggers push through: {push_path(info)}")
