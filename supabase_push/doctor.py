"""``supabase-push doctor``: what is configured, what works per transport, and what to fix.

Every check runs against the real thing (the database, the Realtime server, PostgREST)
with a short timeout; nothing here prints a key or a password.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import httpx
import psycopg
from psycopg import sql

from . import schema
from .broadcast.rest import broadcast_endpoint
from .config import Settings, api_key_headers, key_kind, scrub
from .db import aconnect, connect, describe_dsn, redact_dsn
from .errors import SupabasePushError
from .events import Cursor
from .subscribe import RealtimeTransport, RestReader

__all__ = ["Diagnosis", "Finding", "diagnose", "key_kind"]

Status = Literal["ok", "warn", "fail", "skip"]


@dataclass
class Finding:
    area: str
    check: str
    status: Status
    detail: str = ""
    fix: str | None = None


@dataclass
class Diagnosis:
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(f.status == "fail" for f in self.findings)

    def add(self, area: str, check: str, status: Status, detail: str = "", fix: str | None = None) -> None:
        self.findings.append(Finding(area, check, status, detail, fix))

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "findings": [asdict(f) for f in self.findings]}


async def diagnose(settings: Settings, *, rest_url: str | None = None, timeout: float = 5.0) -> Diagnosis:
    report = Diagnosis()
    _configuration(settings, rest_url, report)
    if settings.database_url:
        await asyncio.to_thread(_database, settings.database_url, report)
        await _listen(settings.database_url, timeout, report)
    else:
        report.add("listen", "LISTEN/NOTIFY", "skip", "no DATABASE_URL")
    key = settings.api_key
    if settings.supabase_url and key:
        await _realtime(settings, key, timeout, report)
        await _rest_broadcast(settings.supabase_url, key, timeout, report)
    else:
        report.add("realtime", "Supabase Realtime", "skip", "needs SUPABASE_URL and a key")
    rest = rest_url or (f"{settings.supabase_url}/rest/v1" if settings.supabase_url else None)
    if rest and key:
        await _postgrest(rest, key, timeout, report)
    else:
        report.add("rest", "PostgREST (change log)", "skip", "needs SUPABASE_URL (or SUPABASE_PUSH_REST_URL) and a key")
    for finding in report.findings:  # belt and braces: no secret leaves this module
        finding.detail = scrub(finding.detail, settings.secrets)
        finding.fix = scrub(finding.fix, settings.secrets) if finding.fix else None
    return report


def _configuration(settings: Settings, rest_url: str | None, report: Diagnosis) -> None:
    area = "configuration"
    if not (settings.database_url or settings.supabase_url or rest_url):
        report.add(area, "anything to connect to", "fail", "none of DATABASE_URL, SUPABASE_URL, SUPABASE_PUSH_REST_URL",
                   "set DATABASE_URL (plain Postgres), or SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY (Supabase)")
    report.add(area, "SUPABASE_URL", "ok" if settings.supabase_url else "skip", settings.supabase_url or "not set")
    report.add(area, "DATABASE_URL", "ok" if settings.database_url else "skip",
               redact_dsn(settings.database_url) if settings.database_url else "not set")
    if settings.service_role_key:
        kind = key_kind(settings.service_role_key)
        if kind in ("service_role", "secret"):
            report.add(area, "SUPABASE_SERVICE_ROLE_KEY", "ok", kind)
        elif kind == "expired":
            report.add(area, "SUPABASE_SERVICE_ROLE_KEY", "fail", "the token has expired",
                       "copy the service_role key again from Project Settings > API")
        else:
            report.add(area, "SUPABASE_SERVICE_ROLE_KEY", "fail", f"wrong key type: {kind}",
                       "use the service_role (or sb_secret_) key; anon keys cannot read the change log or "
                       "join private channels without policies")
    if settings.anon_key:
        kind = key_kind(settings.anon_key)
        if kind in ("service_role", "secret"):
            report.add(area, "SUPABASE_ANON_KEY", "warn", f"holds the {kind} key",
                       "put the service key in SUPABASE_SERVICE_ROLE_KEY; never ship it to browsers")
        else:
            report.add(area, "SUPABASE_ANON_KEY", "ok" if kind in ("anon", "publishable") else "warn", kind)
    if settings.supabase_url and not settings.api_key:
        report.add(area, "a key", "fail", "SUPABASE_URL is set but no key",
                   "set SUPABASE_SERVICE_ROLE_KEY (backends) or SUPABASE_ANON_KEY")


def _database(dsn: str, report: Diagnosis) -> None:
    area = "database"
    where = describe_dsn(dsn)
    try:
        with connect(dsn) as conn:
            report.add(area, "connect", "ok", where)
            info = schema.status(conn)
            if not info.installed:
                report.add(area, "triggers and change log", "fail", "not installed", "run `supabase-push apply`")
                return
            # Publication membership has its own finding per table, and the push path its own, below.
            verified = schema.verify(conn)
            problems = [c for c in verified.problems if c.kind != "publication" and c.name != "push path" and c.failed]
            if problems:
                names = ", ".join(f"{c.name} ({c.status})" for c in problems)
                report.add(area, "triggers and change log", "fail", names, "run `supabase-push apply`")
            else:
                report.add(area, "triggers and change log", "ok", "installed, nothing missing or drifted")
            path = f"{info.broadcast_mode} -> {', '.join(info.broadcast_path) or 'none'}"
            if info.path_drift is not None:
                report.add(area, "push path", "fail", path, info.path_drift)
            else:
                report.add(area, "push path", "ok", path)
            if info.stamper_pid is not None:
                report.add(area, "stamper", "ok", f"loop running (backend {info.stamper_pid}); "
                           f"{info.pending_changes} changes waiting")
            elif info.pending_changes:
                report.add(area, "stamper", "warn", f"no loop running: {info.pending_changes} changes in "
                           f"{info.pending_transactions} transactions wait for a cursor (pushes wait too)",
                           "run any supabase-push process on this database, `supabase-push stamp`, or the pg_cron "
                           "job in docs/supabase.md")
            elif info.schema_version is not None and info.schema_version >= 2:
                report.add(area, "stamper", "ok", "nothing waiting (no loop running now: one starts with any "
                           "supabase-push process on this database)")
            if info.broadcast_failures:
                report.add(area, "broadcast failures", "warn", f"{info.broadcast_failures}, last: {info.last_failure}",
                           "subscribers catch up from the change log; see docs/troubleshooting.md")
            published = {c.name for c in verified.checks if c.kind == "publication" and c.status == "ok"}
            for route in info.routes:
                _table_checks(conn, route["schema_name"], route["table_name"], published, report)
    except SupabasePushError as exc:
        report.add(area, "connect", "fail", f"{where}: {exc.message}", exc.hint)


def _table_checks(conn: psycopg.Connection[Any], schema_name: str, table: str, published: set[str],
                  report: Diagnosis) -> None:
    """Publication membership as `verify` found it (``published``: its checks that passed), and the replica
    identity of the tables that log the rows: the table, or a partitioned table's partitions."""
    name = f"{schema_name}.{table}"
    row = conn.execute(
        "SELECT array(SELECT ARRAY[ln.nspname::text, l.relname::text]"
        "             FROM pg_catalog.pg_class l JOIN pg_catalog.pg_namespace ln ON ln.oid = l.relnamespace"
        "             WHERE l.relkind = 'r' AND l.relreplident <> 'f'"
        "               AND (l.oid = c.oid OR l.oid IN (SELECT t.relid FROM pg_catalog.pg_partition_tree(c.oid) t))"
        "             ORDER BY 1)"
        " FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s",
        (schema_name, table)).fetchone()
    if row is None:
        report.add("database", name, "fail", "the routed table is gone", "recreate it or `supabase-push apply`")
        return
    [not_full] = row
    quoted = sql.Identifier(schema_name, table).as_string(conn)
    if f"supabase_realtime has {schema.route_name({'schema_name': schema_name, 'table_name': table})}" in published:
        report.add("database", f"{name} in publication supabase_realtime", "ok")
    else:
        report.add("database", f"{name} in publication supabase_realtime", "fail",
                   "postgres_changes subscribers see nothing from it",
                   f"`supabase-push apply`, or ALTER PUBLICATION supabase_realtime ADD TABLE {quoted}")
    if not not_full:
        report.add("database", f"{name} REPLICA IDENTITY FULL", "ok")
    else:
        report.add("database", f"{name} REPLICA IDENTITY FULL", "warn",
                   "postgres_changes old rows carry only the primary key "
                   "(supabase-push events carry the whole old row)",
                   "; ".join(f"ALTER TABLE {sql.Identifier(*leaf).as_string(conn)} REPLICA IDENTITY FULL"
                             for leaf in not_full))


async def _listen(dsn: str, timeout: float, report: Diagnosis) -> None:
    channel = f"supabase-push-doctor-{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    try:
        async with await aconnect(dsn) as conn:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            await conn.execute("SELECT pg_notify(%s, 'ping')", (channel,))
            async for _ in conn.notifies(timeout=timeout, stop_after=1):
                ms = (time.perf_counter() - started) * 1000
                report.add("listen", "LISTEN/NOTIFY round trip", "ok", f"{ms:.1f} ms")
                return
        report.add("listen", "LISTEN/NOTIFY round trip", "fail", f"no notification within {timeout:g} s",
                   "a connection pooler in transaction mode drops LISTEN: use the direct (port 5432) connection")
    except SupabasePushError as exc:
        report.add("listen", "LISTEN/NOTIFY round trip", "fail", exc.message, exc.hint)
    except psycopg.Error as exc:
        report.add("listen", "LISTEN/NOTIFY round trip", "fail", str(exc).splitlines()[0])


async def _realtime(settings: Settings, key: str, timeout: float, report: Diagnosis) -> None:
    """Join the private trade-updates channel as the subscriber would."""
    assert settings.supabase_url is not None
    transport = RealtimeTransport(settings.supabase_url, key, private=settings.private, timeout=timeout,
                                  liveness_interval=3600)
    joined = asyncio.Event()

    async def up() -> None:
        joined.set()

    async def emit(_: Any) -> None:
        pass

    started = time.perf_counter()
    task = asyncio.create_task(transport.run(["trade-updates"], emit, up))
    waiter = asyncio.create_task(joined.wait())
    await asyncio.wait({task, waiter}, timeout=timeout * 2 + 1, return_when=asyncio.FIRST_COMPLETED)
    ms = (time.perf_counter() - started) * 1000
    if joined.is_set():
        scope = "private" if settings.private else "public"
        report.add("realtime", "connect and join trade-updates", "ok", f"{scope} channel, {ms:.0f} ms")
    elif task.done() and isinstance(task.exception(), SupabasePushError):
        error = task.exception()
        assert isinstance(error, SupabasePushError)
        report.add("realtime", "connect and join trade-updates", "fail", error.message,
                   error.hint or "check SUPABASE_URL (https://<ref>.supabase.co) and that Realtime is enabled")
    else:
        report.add("realtime", "connect and join trade-updates", "fail", f"no answer within {ms / 1000:.0f} s",
                   "check SUPABASE_URL and that nothing between here and it blocks websockets")
    for pending in (task, waiter):
        pending.cancel()
    await asyncio.gather(task, waiter, return_exceptions=True)


async def _rest_broadcast(url: str, key: str, timeout: float, report: Diagnosis) -> None:
    """The per-event REST endpoint (Realtime >= 2.97): a public message on a topic of its own."""
    endpoint = f"{broadcast_endpoint(url)}/supabase-push-doctor/events/doctor"
    headers = {**api_key_headers(key), "Content-Type": "application/json"}
    try:
        async with httpx.AsyncClient(timeout=timeout) as http:
            response = await http.post(endpoint, headers=headers, content=b'{"check": "doctor"}')
    except httpx.HTTPError as exc:
        report.add("realtime", "REST broadcast", "fail", f"cannot reach {endpoint}: {type(exc).__name__}",
                   "check SUPABASE_URL")
        return
    if response.status_code in (200, 202):
        report.add("realtime", "REST broadcast (per event)", "ok", f"HTTP {response.status_code}")
    elif response.status_code == 404:
        report.add("realtime", "REST broadcast (per event)", "warn",
                   "404: the Realtime server is older than 2.97",
                   "nothing to do: the broadcast helpers fall back to the batch endpoint")
    elif response.status_code in (401, 403):
        report.add("realtime", "REST broadcast", "fail", f"HTTP {response.status_code}: the key was refused",
                   "use the service_role key of this project")
    else:
        report.add("realtime", "REST broadcast", "fail", f"HTTP {response.status_code}")


async def _postgrest(rest_url: str, key: str, timeout: float, report: Diagnosis) -> None:
    reader = RestReader(rest_url, key, timeout=timeout)
    try:
        await reader.read(Cursor(2**62, 0), 1, ["trade-updates"], "poll")
        report.add("rest", "PostgREST reads the change log", "ok", reader.describe())
    except SupabasePushError as exc:
        report.add("rest", "PostgREST reads the change log", "fail", exc.message, exc.hint)
    finally:
        await reader.close()
