"""Programs that watch the change log: tail, relay, forward."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from ..errors import ConfigError
from ._app import (
    DbUrl,
    RestUrl,
    app,
    err,
    out,
    print_json,
    reporting_errors,
    sayer,
    settings_with,
)

if TYPE_CHECKING:  # imported where used, so `supabase-push --help` stays quick
    from ..events import Cursor
    from ..sinks import ForwardConfig
    from ..subscribe import Reader


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

    from ..subscribe import Subscriber
    from ..tail import run_tail

    with reporting_errors(as_json):
        settings = settings_with(db_url)
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

    from ..events import DEFAULT_ROUTES

    say = sayer(as_json)
    with reporting_errors(as_json):
        try:
            from ..relay import Authenticator, Policy, RelayConfig, create_app
            from ..relay.server import RelayServer
        except ImportError as exc:
            raise ConfigError(f"the relay needs {(exc.name or 'its extra').split('.')[0]}, which is not installed",
                              hint="pip install 'supabase-push[relay]'") from None
        policy = Policy(topics=topic or list(DEFAULT_ROUTES.values()), owner_column=owner_column,
                        shared_topics=shared_topic or (), topic_tiers=_parse_tiers(tier or []))
        config = RelayConfig(settings=settings_with(db_url), policy=policy, heartbeat=heartbeat, buffer=buffer,
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

    from .._signals import stop_on_signals
    from ..events import Cursor
    from ..sinks import Alert, Forwarder, load_config, replay_dead_letters, subscriber_for
    from ..subscribe import reader_for

    def report(sink: str, alert: Alert, outcome: str) -> None:
        if as_json:
            print(json.dumps({"sink": sink, "rule": alert.rule, "priority": str(alert.priority), "key": alert.key,
                              "outcome": outcome, "message": alert.message}), flush=True)
        else:
            style = "green" if outcome == "sent" else "red"
            out.print(f"[{style}]{outcome:<13}[/{style}] {alert.priority!s:<8} {escape(alert.rule)} → "
                      f"{escape(sink)}  [dim]{alert.event.cursor}[/dim]  {escape(alert.message)}")

    with reporting_errors(as_json):
        config = load_config(config_file)
        if check:
            _print_forward_config(config, as_json)
            return
        if dry_run:
            try:
                first = Cursor.parse(start or "0:0")
            except ValueError as exc:
                raise ConfigError(str(exc), hint="--from takes a cursor (seq:id) with --dry-run") from None
            asyncio.run(_forward_dry_run(config, reader_for(settings_with(db_url), reader, rest_url=rest_url),
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
        subscriber = subscriber_for(config, settings_with(db_url), start=start, transport=transport, reader=reader,
                                    rest_url=rest_url)
        forwarder = Forwarder(config, subscriber, on_outcome=report)

        async def run() -> None:
            with stop_on_signals() as stop:
                if not as_json:
                    err.print(f"[green]✓[/green] forwarding {len(config.rules)} rule(s) to "
                              f"{', '.join(w.sink.describe() for w in config.workers)}"
                              f" from {resume or start or 'now'}; Ctrl-C to stop")
                await forwarder.run_until(stop, grace=grace)

        asyncio.run(run())
        stats = forwarder.stats()
        if as_json:
            print(json.dumps({"final": True, **stats}))
        else:
            sinks = ", ".join(f"{name} {s['sent']} sent/{s['dead_lettered']} dead"
                              for name, s in stats["sinks"].items())
            err.print(f"stopped at {stats['cursor']}: {stats['events']} events, {stats['alerts']} alerts; {sinks}")


async def _forward_dry_run(config: ForwardConfig, reader: Reader, start: Cursor, as_json: bool) -> None:
    from ..sinks import dry_run

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
        print_json({"rules": rules, "sinks": sinks, "dead_letter_file": str(config.dead_letters.path),
                     "cursor_file": str(config.cursor_file)})
        return
    for worker in config.workers:
        out.print(f"[green]✓[/green] sink {escape(worker.sink.describe())} (priority ≥ {worker.min_priority}, "
                  f"rate {worker.rate or 'unlimited'})")
    for rule in config.rules:
        out.print(f"[green]✓[/green] rule {escape(repr(rule.name))} ({rule.priority}) when "
                  f"{escape(rule.when.source if rule.when else 'always')} → {escape(', '.join(rule.sinks) or 'all')}")
    out.print(escape(f"  dead letters: {config.dead_letters.path}\n  cursor:       {config.cursor_file}"))
