"""Sending from the command line: broadcast, publish."""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Annotated, Any

import typer
from rich.markup import escape

from ..config import Settings, check_backend
from ..errors import ConfigError
from ._app import (
    JsonOut,
    PayloadOption,
    app,
    out,
    print_json,
    reporting_errors,
)


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

    from ..broadcast import Broadcaster, RetryPolicy

    with reporting_errors(as_json):
        payload = _payload(data, example='{"symbol": "SPY"}')
        settings = Settings.from_env()
        if backend:
            chosen = check_backend(backend, "--backend")
            if chosen in ("memory", "off"):
                raise ConfigError(f"--backend {backend} sends nothing anywhere", hint="use rest, websocket or notify")
            settings = dataclasses.replace(settings, broadcast_backend=chosen)
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
        print_json({"ok": True, "topic": topic, "event": event, "private": is_private,
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

    from ..broadcast import Broadcaster, NullBackend, RetryPolicy, publisher_from_settings
    from ..broadcast.publishers import NOT_CONFIGURED

    with reporting_errors(as_json):
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
        print_json({"ok": True, "topic": topic, "event": event, "key": key, "id": change_id,
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
