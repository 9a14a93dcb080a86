"""Install, check and remove the trigger SQL (the library behind ``supabase-push apply``...).

All of it runs the shipped files in sql/ as they are: the only thing added is a handful
of session settings (routes, broadcast mode) that the file reads at its end.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

import psycopg
from psycopg import errors, sql
from psycopg.rows import dict_row

from . import _sql
from ._backoff import Backoff
from .db import map_error
from .errors import ConfigError, SchemaError, SupabasePushError
from .events import DEFAULT_ROUTES

__all__ = [
    "ApplyResult",
    "BroadcastMode",
    "Check",
    "PruneResult",
    "Route",
    "Status",
    "VerifyReport",
    "apply",
    "apply_sql",
    "check_broadcast_mode",
    "parse_route",
    "prune",
    "status",
    "uninstall",
    "verify",
]

logger = logging.getLogger("supabase_push")

BroadcastMode = Literal["auto", "realtime", "notify", "both", "none"]
BROADCAST_MODES: tuple[BroadcastMode, ...] = ("auto", "realtime", "notify", "both", "none")


def check_broadcast_mode(mode: str) -> BroadcastMode:
    """``mode`` if it is a broadcast mode, else a ConfigError naming them."""
    for known in BROADCAST_MODES:
        if mode == known:
            return known
    raise ConfigError(f"unknown broadcast mode {mode!r}", hint=f"use one of {', '.join(BROADCAST_MODES)}")

Conn = psycopg.Connection[Any]
T = TypeVar("T")

# DDL waits at most this long for a lock; then it gives way and retries, so that writers
# are never the ones a deadlock check aborts.
LOCK_TIMEOUT = "500ms"
LOCK_RETRY_SECONDS = 60.0


@dataclass(frozen=True)
class Route:
    """Changes of ``table`` (``name`` or ``schema.name``) are published on ``topic``."""

    table: str
    topic: str
    trigger: str | None = None
    """The trigger's name (None: the default for the table)."""

    def as_json(self) -> dict[str, str]:
        route = {"table": self.table, "topic": self.topic}
        return route if self.trigger is None else {**route, "trigger": self.trigger}


DEFAULT_ROUTE_LIST = tuple(Route(table, topic) for table, topic in DEFAULT_ROUTES.items())


def parse_route(text: str) -> Route:
    """``TABLE=TOPIC`` (the last ``=`` splits; TABLE may be quoted, ``"My Table"=my-topic``)."""
    table, sep, topic = text.rpartition("=")
    if not sep or not table.strip() or not topic.strip():
        raise ConfigError(
            f"bad route {text!r}",
            hint="write TABLE=TOPIC, e.g. positions=position-updates or "
            '\'public."My Table"=my-topic\'',
        )
    return Route(table.strip(), topic.strip())


# ---------------------------------------------------------------- apply / uninstall


@dataclass
class ApplyResult:
    changed: bool
    schema_version: int
    fingerprint: str
    routes: list[dict[str, Any]]
    created_tables: bool = False
    previous: dict[str, str] = field(default_factory=dict)
    """Each route installed before this apply, by :func:`route_name`: its topic then."""
    added: list[str] = field(default_factory=list)
    """Routes new in this apply, as ``schema.table -> topic``."""
    removed: list[str] = field(default_factory=list)
    """Routes this apply removed (only with ``replace``, or ``routes`` naming them)."""
    retargeted: list[str] = field(default_factory=list)
    """Routes whose topic changed, as ``schema.table -> new (was old)``."""
    upgraded_from: int | None = None
    """The schema version this apply migrated from (None: no migration ran)."""
    event_topics: list[str] = field(default_factory=list)
    """The topics declared for events (``supabase_push.publish``) besides the routed tables' own."""


def apply_sql(
    routes: Sequence[Route] | None = None,
    *,
    broadcast_mode: BroadcastMode = "auto",
    private_broadcast: bool = True,
    create_tables: bool = False,
    event_topics: Sequence[str] | None = None,
) -> str:
    """The exact SQL ``apply`` runs, runnable by psql: settings, then the shipped files. ``event_topics``
    is the whole set of declared event topics (None: leave them as they are)."""
    check_broadcast_mode(broadcast_mode)
    settings = {
        "supabase_push.routes": json.dumps([r.as_json() for r in routes or DEFAULT_ROUTE_LIST]),
        "supabase_push.broadcast_mode": broadcast_mode,
        "supabase_push.private_broadcast": "true" if private_broadcast else "false",
        "supabase_push.event_topics": "" if event_topics is None else json.dumps(list(event_topics)),
    }
    lines = [
        "-- settings read by realtime_triggers.sql (session level, so they outlive its BEGIN)",
        *(
            sql.SQL("SELECT pg_catalog.set_config({}, {}, false);")
            .format(sql.Literal(key), sql.Literal(value))
            .as_string(None)
            for key, value in settings.items()
        ),
        "",
    ]
    if create_tables:
        lines += [_sql.read_sql(_sql.REFERENCE_TABLES), ""]
    lines.append(_sql.read_sql(_sql.INSTALL))
    return "\n".join(lines)


def apply(
    conn: Conn,
    routes: Sequence[Route] | None = None,
    *,
    replace: bool = False,
    broadcast_mode: BroadcastMode = "auto",
    private_broadcast: bool = True,
    create_tables: bool = False,
    event_topics: Sequence[str] = (),
) -> ApplyResult:
    """Install or update the triggers; a no-op when everything is already as asked.

    ``routes`` are added to (or change the topic of) the installed ones, which stay; with
    ``replace`` they are the whole set and the others are removed. With no ``routes`` an
    existing install keeps its routes (an upgrade in place) and a new one gets the defaults.
    ``event_topics`` (topics that take events from services besides the routed ones) are added to
    the declared ones, or with ``replace`` are the whole set.
    """
    before = _installed_state(conn)
    if before is not None and before["installation"]["schema_version"] > _sql.SCHEMA_VERSION:
        raise ConfigError(
            f"this database has supabase-push schema version {before['installation']['schema_version']}, newer "
            f"than this package's ({_sql.SCHEMA_VERSION}): nothing was changed",
            hint="upgrade supabase-push (pip install -U supabase-push); a downgrade is not supported")
    installed = before["routes"] if before else []
    version = before["installation"]["schema_version"] if before else None
    migrations = _sql.migrations_from(version) if version is not None and version < _sql.SCHEMA_VERSION else []
    declared = [] if replace or before is None else before["event_topics"]
    script = apply_sql(_wanted_routes(conn, routes, installed, replace), broadcast_mode=broadcast_mode,
                       private_broadcast=private_broadcast, create_tables=create_tables,
                       event_topics=list(dict.fromkeys([*declared, *event_topics])))
    if migrations:
        # Each migration's first part and the install run as one transaction: an upgrade that fails
        # changes nothing. The second parts follow, each in a transaction of its own.
        logger.info("upgrading supabase-push schema v%s to v%s", version, _sql.SCHEMA_VERSION)
        install = _sql.read_sql(_sql.INSTALL)
        pre = "".join(_transaction_body(_sql.read_sql(m.pre)) for m in migrations)
        script = script.replace(install, install.replace("\nBEGIN;\n", f"\nBEGIN;\n{pre}\n", 1))
    _run_script(conn, script)
    # Every second part, not only this upgrade's: each is idempotent, and one may have left work
    # for a later apply (0002 keeps the retired table while a statement older than the upgrade runs).
    for migration in _sql.migrations_from(1):
        if migration.post:
            _run_script(conn, _sql.read_sql(migration.post))
    after = _installed_state(conn)
    assert after is not None  # the script committed
    old = {route_name(r): r["topic"] for r in installed}
    new = {route_name(r): r["topic"] for r in after["routes"]}
    return ApplyResult(
        changed=before != after,
        schema_version=after["installation"]["schema_version"],
        fingerprint=after["installation"]["fingerprint"],
        routes=after["routes"],
        created_tables=create_tables,
        previous=old,
        added=[f"{name} -> {topic}" for name, topic in new.items() if name not in old],
        removed=[f"{name} -> {topic}" for name, topic in old.items() if name not in new],
        retargeted=[f"{name} -> {topic} (was {old[name]})" for name, topic in new.items()
                    if name in old and old[name] != topic],
        upgraded_from=version if migrations else None,
        event_topics=after["event_topics"],
    )


def _transaction_body(script: str) -> str:
    """A shipped script without its own ``BEGIN;`` and final ``COMMIT;`` (to run inside another)."""
    _head, sep, body = script.partition("\nBEGIN;\n")
    inner, _, tail = body.rstrip().rpartition("\nCOMMIT;")
    if not sep or tail.strip():
        raise SchemaError("a schema script must be one BEGIN; ... COMMIT; transaction")
    return inner + "\n"


def route_name(route: dict[str, Any]) -> str:
    """``schema.table`` of an installed route, quoted where Postgres would quote it."""
    return f"{quote_ident(route['schema_name'])}.{quote_ident(route['table_name'])}"


def _wanted_routes(conn: Conn, routes: Sequence[Route] | None, installed: list[dict[str, Any]],
                   replace: bool) -> Sequence[Route] | None:
    """The whole set of routes to install (the SQL is declarative: what is left out is removed)."""
    kept = [Route(route_name(r), r["topic"], r["trigger_name"]) for r in installed]
    if routes is None:
        return None if replace or not kept else kept
    if replace:
        return routes
    named = {_table_key(conn, route.table) for route in routes}
    return [*routes, *(route for route, r in zip(kept, installed, strict=True)
                       if (r["schema_name"], r["table_name"]) not in named)]


def _table_key(conn: Conn, table: str) -> tuple[str, str] | None:
    """``(schema, table)`` as the install's SQL reads a route's table name (None if it is not one)."""
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_catalog.parse_ident(%s)", (table,))
            row = cur.fetchone()
    except psycopg.Error:  # the install reports a bad name clearly
        _rollback(conn)
        return None
    parts = list(row[0]) if row else []
    return (("public", parts[0]) if len(parts) == 1 else (parts[0], parts[1])) if len(parts) in (1, 2) else None


def uninstall_sql() -> str:
    return _sql.read_sql(_sql.UNINSTALL)


def uninstall(conn: Conn) -> bool:
    """Remove everything ``apply`` installed. True if something was installed."""
    installed = _installed_state(conn) is not None
    _run_script(conn, uninstall_sql())
    return installed


def _run_script(conn: Conn, script: str) -> None:
    """Run a shipped script (which has its own BEGIN/COMMIT) with lock-timeout retries."""
    if not conn.autocommit:
        raise ConfigError("schema scripts need an autocommit connection")

    # The script goes to the server as one query. Its final COMMIT is sent on its own, after
    # the rest has run: a client killed midway never sends it, so the server rolls back
    # instead of running the script to its end once it gets its locks.
    body, commit = script.rstrip().rsplit("\n", 1)
    if commit.strip().upper() != "COMMIT;":
        raise SchemaError("a schema script must end with COMMIT;")

    def attempt() -> None:
        try:
            conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT)))
            conn.execute(body.encode())
            conn.execute("COMMIT")
        except psycopg.Error:
            _rollback(conn)
            raise
        finally:
            if not conn.closed:
                conn.execute("RESET lock_timeout")

    _retry_on_lock_timeout(attempt)


def _rollback(conn: Conn) -> None:
    if not conn.closed and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        conn.execute("ROLLBACK")


def _retry_on_lock_timeout(fn: Callable[[], T]) -> T:
    deadline = time.monotonic() + LOCK_RETRY_SECONDS
    backoff, failures = Backoff(0.05, 2.0), 0
    while True:
        try:
            return fn()
        except errors.LockNotAvailable:
            failures += 1
            if time.monotonic() > deadline:
                raise SupabasePushError(
                    f"could not get the table locks within {LOCK_RETRY_SECONDS:.0f} s",
                    hint="a long transaction holds a lock on a routed table; retry when it ends",
                ) from None
            delay = backoff.delay(failures)
            logger.info("a table is busy; retrying in %.2f s", delay)
            time.sleep(delay)
        except psycopg.Error as exc:
            raise map_error(exc) from None


def _installed_state(conn: Conn) -> dict[str, Any] | None:
    """What is installed, as plain data (None if nothing): compared before/after apply."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT pg_catalog.to_regclass('supabase_push.installation') IS NOT NULL AS ok")
        row = cur.fetchone()
        if not row or not row["ok"]:
            return None
        cur.execute(
            "SELECT schema_version, fingerprint, broadcast_mode, private_broadcast, created_publication,"
            " installed_at, updated_at FROM supabase_push.installation"
        )
        installation = cur.fetchone()
        if installation is None:
            return None
        installation["applied_path"] = None  # installs before the push path was recorded have no push_path
        if _exists(conn, "to_regclass", "supabase_push.push_path"):
            cur.execute("SELECT applied FROM supabase_push.push_path")
            row = cur.fetchone()
            installation["applied_path"] = row["applied"] if row else None
        cur.execute(
            "SELECT schema_name, table_name, topic, trigger_name, added_to_publication"
            " FROM supabase_push.routes ORDER BY schema_name, table_name"
        )
        routes = cur.fetchall()
        event_topics: list[str] = []
        if _exists(conn, "to_regclass", "supabase_push.event_topics"):  # schema 3 and later
            cur.execute("SELECT topic FROM supabase_push.event_topics ORDER BY topic")
            event_topics = [row["topic"] for row in cur.fetchall()]
        return {"installation": installation, "routes": routes, "event_topics": event_topics}


# ---------------------------------------------------------------- verify

CheckStatus = Literal["ok", "missing", "drifted", "warning"]


@dataclass
class Check:
    kind: str
    name: str
    status: CheckStatus
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.status in ("missing", "drifted")


@dataclass
class VerifyReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(check.failed for check in self.checks)

    @property
    def problems(self) -> list[Check]:
        return [check for check in self.checks if check.status != "ok"]

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [asdict(check) for check in self.checks]}

    def add(self, kind: str, name: str, status: CheckStatus, detail: str = "") -> None:
        self.checks.append(Check(kind, name, status, detail))


def verify(conn: Conn) -> VerifyReport:
    """Check every installed object; ``report.ok`` is False if any is missing or drifted."""
    try:
        return _verify(conn)
    except psycopg.Error as exc:
        raise map_error(exc) from None


def _verify(conn: Conn) -> VerifyReport:
    report = VerifyReport()
    state = _installed_state(conn)
    if state is None:
        report.add("installation", "supabase_push", "missing",
                   "not installed: run supabase-push apply")
        return report
    installation = state["installation"]
    version = installation["schema_version"]
    if version == _sql.SCHEMA_VERSION:
        report.add("installation", "schema version", "ok", str(version))
    elif version > _sql.SCHEMA_VERSION:
        report.add("installation", "schema version", "drifted",
                   f"installed {version}, newer than this package's {_sql.SCHEMA_VERSION}: upgrade supabase-push "
                   "to verify it (apply refuses to downgrade)")
    else:
        report.add("installation", "schema version", "drifted",
                   f"installed {version}, this package ships {_sql.SCHEMA_VERSION}: supabase-push apply upgrades it "
                   f"({'; '.join(m.summary for m in _sql.migrations_from(version))})")

    for table in _sql.TABLES:
        report.add("table", table, "ok" if _exists(conn, "to_regclass", table) else "missing")
    for function in _sql.FUNCTIONS:
        report.add("function", function.split("(")[0],
                   "ok" if _exists(conn, "to_regprocedure", function) else "missing")
    _check_stamper(conn, report)

    current = _scalar(conn, "SELECT supabase_push.fingerprint_v1()") \
        if _exists(conn, "to_regprocedure", "supabase_push.fingerprint_v1()") else None
    if current == installation["fingerprint"]:
        report.add("installation", "fingerprint", "ok", current[:12])
    else:
        report.add("installation", "fingerprint", "drifted",
                   "functions or triggers were changed since apply: run supabase-push apply")

    publication = _scalar(
        conn, "SELECT puballtables FROM pg_catalog.pg_publication WHERE pubname = 'supabase_realtime'"
    )
    report.add("publication", "supabase_realtime", "missing" if publication is None else "ok",
               "FOR ALL TABLES" if publication else "")
    # Routes are asked of the installed schema's own functions where it has them (schema 9: a partitioned table
    # is published as its partitions, and its triggers call another function); an older one as it installed.
    own = _exists(conn, "to_regprocedure", "supabase_push.trigger_call_v1(oid,text)")
    for route in state["routes"]:
        _check_route(conn, report, route, publication_exists=publication is not None, own_checks=own)
    _check_broadcast_path(conn, report, installation)
    return report


STAMPER_BEHIND_SECONDS = 5.0
"""verify warns when committed changes have waited for the stamper at least this long."""


def _check_stamper(conn: Conn, report: VerifyReport) -> None:
    if not _exists(conn, "to_regprocedure", "supabase_push.pending_v2()"):
        return  # an older schema: its version check says what to do
    pending = _row(conn, """SELECT changes, transactions, stamper_pid,
                                   extract(epoch FROM now() - stamped_at)::float8 AS idle_seconds
                            FROM supabase_push.pending_v2()""")
    assert pending is not None
    waiting = f"{pending['changes']} committed changes wait for a cursor"
    if pending["stamper_pid"] is None:
        status: CheckStatus = "warning" if pending["changes"] else "ok"
        report.add("stamper", "stamping loop", status,
                   f"none running: {waiting} (pushes wait; readers by SQL stamp as they read). Run any supabase-push "
                   "process on this database, `supabase-push stamp`, or pg_cron (docs/supabase.md)"
                   if pending["changes"] else "none running now; starts with any supabase-push process, "
                   "`supabase-push stamp` or pg_cron")
    elif pending["changes"] and (pending["idle_seconds"] or 0) >= STAMPER_BEHIND_SECONDS:
        report.add("stamper", "stamping loop", "warning",
                   f"backend {pending['stamper_pid']} runs it but {waiting}, "
                   f"last stamp {pending['idle_seconds']:.0f} s ago")
    else:
        report.add("stamper", "stamping loop", "ok", f"backend {pending['stamper_pid']}")


def _check_deferrable(conn: Conn, report: VerifyReport, route: dict[str, Any], relid: int) -> None:
    names = _scalar(conn, """SELECT string_agg(quote_ident(conname), ', ') FROM pg_catalog.pg_constraint
                             WHERE conrelid = %s AND condeferrable AND contype IN ('p', 'u', 'x')""", (relid,))
    if names:
        report.add("table", f"{route_name(route)} constraints", "drifted",
                   f"DEFERRABLE unique, primary key or exclusion constraints ({names}): a second writer can change a "
                   "key without waiting for the first, and the change log cannot order the two; recreate them "
                   "NOT DEFERRABLE (apply refuses such tables)")


def _check_route(conn: Conn, report: VerifyReport, route: dict[str, Any], *,
                 publication_exists: bool, own_checks: bool) -> None:
    qualified = route_name(route)
    relid = _scalar(conn, "SELECT pg_catalog.to_regclass(%s)::oid", (qualified,))
    label = f"{route['trigger_name']} on {qualified}"
    if relid is None:
        report.add("table", qualified, "missing", f"routed to {route['topic']}")
        return
    member = _scalar(
        conn,
        "SELECT supabase_push.published_v1(%s)" if own_checks else
        """SELECT EXISTS (SELECT FROM pg_catalog.pg_publication_tables
                          WHERE pubname = 'supabase_realtime' AND schemaname = %s AND tablename = %s)""",
        (relid,) if own_checks else (route["schema_name"], route["table_name"]),
    )
    if publication_exists:
        report.add("publication", f"supabase_realtime has {qualified}",
                   "ok" if member else "missing")
    _check_deferrable(conn, report, route, relid)
    call, call_params = (("supabase_push.trigger_call_v1(%s, %s)", (relid, route["topic"])) if own_checks else
                         ("(SELECT 'supabase_push.capture_change_v1()'::regprocedure AS function,"
                          " pg_catalog.convert_to(%s, 'UTF8') || '\\x00'::bytea AS args)", (route["topic"],)))
    triggers = {row["tgname"]: row for row in _rows(
        conn,
        sql.SQL("""SELECT t.tgname, t.tgenabled, t.tgfoid = call.function AS ours, t.tgargs = call.args AS topic_ok
                   FROM pg_catalog.pg_trigger t, {} call
                   WHERE t.tgrelid = %s AND t.tgname IN (%s, 'supabase_push_truncate')""").format(sql.SQL(call)),
        (*call_params, relid, route["trigger_name"]),
    )}
    trigger = triggers.get(route["trigger_name"])
    if trigger is None:
        report.add("trigger", label, "missing", "changes are not captured: run supabase-push apply")
    elif trigger["tgenabled"] == "D":
        report.add("trigger", label, "drifted", "disabled")
    elif not (trigger["ours"] and trigger["topic_ok"]):
        report.add("trigger", label, "drifted", "calls another function or topic")
    else:
        report.add("trigger", label, "ok", f"-> {route['topic']}")
    truncate = triggers.get("supabase_push_truncate")
    label = f"supabase_push_truncate on {qualified}"
    if truncate is None:
        report.add("trigger", label, "missing", "a TRUNCATE would go unseen by subscribers: run supabase-push apply")
    elif truncate["tgenabled"] == "D" or not truncate["ours"]:
        report.add("trigger", label, "drifted", "disabled, or calls another function")
    else:
        report.add("trigger", label, "ok", f"TRUNCATE -> {route['topic']}")


def _check_broadcast_path(conn: Conn, report: VerifyReport, installation: dict[str, Any]) -> None:
    path = _broadcast_path(conn, installation["broadcast_mode"])
    private = "private" if installation["private_broadcast"] else "public"
    applied = installation["applied_path"]
    if applied is None:
        report.add("broadcast", "push path", "warning", "not recorded by the version that installed it: "
                   "`supabase-push apply` records it, so that a later change is noticed")
    elif list(applied) != path:
        report.add("broadcast", "push path", "drifted", path_drift(installation["broadcast_mode"], list(applied), path))
    if "realtime" in path:
        report.add("broadcast", "realtime.send", "ok", f"{private} channels")
        if not _realtime_partition_today(conn):
            report.add("broadcast", "realtime.messages partition for today", "missing",
                       "realtime.send drops messages silently without it; Realtime creates "
                       "partitions when it connects to the database")
    if "notify" in path:
        report.add("broadcast", "pg_notify", "ok", "channel per topic")
    if not path:
        report.add("broadcast", "none", "warning", "broadcast mode none: change log only")
    failures = _row(conn, "SELECT broadcast_failures, last_failure FROM supabase_push.health")
    if failures and failures["broadcast_failures"]:
        report.add("broadcast", "failures", "warning",
                   f"{failures['broadcast_failures']} failed, last: {failures['last_failure']}")


def path_drift(mode: str, applied: list[str], now: list[str]) -> str:
    """Why a push path that changed since apply matters, and the two ways out."""
    def named(path: list[str]) -> str:
        return ", ".join(path) or "none"

    why = ("realtime.send() appeared (`supabase-push serve --install-realtime` adds it): LISTEN clients hear nothing; "
           "`supabase-push serve --clean` removes it" if "realtime" in now and "realtime" not in applied else
           "realtime.send() is gone: Realtime clients hear nothing")
    return (f"apply chose {named(applied)} (mode {mode}); triggers now push through {named(now)}: {why}, "
            f"or run `supabase-push apply` to keep the new path")


def _broadcast_path(conn: Conn, mode: str) -> list[str]:
    """The paths the triggers take (one rule, in SQL: supabase_push.broadcast_paths_v1)."""
    return list(_scalar(conn, "SELECT supabase_push.broadcast_paths_v1(%s)", (mode,)))


def _realtime_partition_today(conn: Conn) -> bool:
    if not _scalar(conn, "SELECT pg_catalog.to_regclass('realtime.messages') IS NOT NULL"):
        return False
    relkind = _scalar(conn, "SELECT relkind FROM pg_catalog.pg_class "
                            "WHERE oid = 'realtime.messages'::regclass")
    if relkind != "p":
        return True
    return bool(_scalar(
        conn,
        """SELECT EXISTS (
             SELECT FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'realtime.messages'::regclass
               AND pg_catalog.pg_get_expr(c.relpartbound, c.oid) LIKE
                   'FOR VALUES FROM (''' || pg_catalog.to_char(pg_catalog.now() AT TIME ZONE 'UTC',
                                                               'YYYY-MM-DD') || '%')""",
    ))


# ---------------------------------------------------------------- status


@dataclass
class Status:
    installed: bool
    schema_version: int | None = None
    installed_at: datetime | None = None
    updated_at: datetime | None = None
    broadcast_mode: str | None = None
    broadcast_path: list[str] = field(default_factory=list)
    """Where the triggers push now."""
    applied_path: list[str] | None = None
    """Where they pushed when apply ran (None: installed by a version that did not record it)."""
    private_broadcast: bool | None = None
    routes: list[dict[str, Any]] = field(default_factory=list)
    event_topics: list[str] = field(default_factory=list)
    """Topics declared for events from services, besides the routed tables' own."""
    changes: int = 0
    transactions: int = 0
    last_cursor: str | None = None
    last_commit_at: datetime | None = None
    broadcast_failures: int = 0
    last_failure: str | None = None
    pruned_through: str | None = None
    """Changes up to this cursor were deleted by ``prune``; None if nothing was."""
    pending_changes: int = 0
    """Committed changes that have no cursor yet: they wait for the stamper (lag, in changes)."""
    pending_transactions: int = 0
    stamped_at: datetime | None = None
    """When a stamping round last gave changes their cursor."""
    stamper_pid: int | None = None
    """The backend running the stamping loop (None: no supabase-push process, `stamp` or pg_cron runs it)."""

    @property
    def path_drift(self) -> str | None:
        """Why the push path differs from the one ``apply`` chose (see :func:`path_drift`), or None."""
        if self.applied_path is None or self.applied_path == self.broadcast_path:
            return None
        return path_drift(self.broadcast_mode or "auto", self.applied_path, self.broadcast_path)

    def as_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), default=str))  # type: ignore[no-any-return]


def status(conn: Conn) -> Status:
    """What is installed and how much the change log holds."""
    try:
        state = _installed_state(conn)
        if state is None:
            return Status(installed=False)
        installation = state["installation"]
        log: dict[str, Any] = {}
        if _exists(conn, "to_regprocedure", "supabase_push.pending_v2()"):  # an older schema: no log figures
            log = _row(
                conn,
                """SELECT (SELECT count(*) FROM supabase_push.change_log) AS changes,
                          (SELECT count(*) FROM supabase_push.commits) AS txns,
                          (SELECT h.seq::text || ':' || h.id::text FROM public.supabase_push_head() h
                           WHERE (h.seq, h.id) > (0, 0)) AS last_cursor,
                          (SELECT max(committed_at) FROM supabase_push.commits) AS last_commit_at,
                          p.changes AS pending_changes, p.transactions AS pending_transactions, p.stamped_at,
                          p.stamper_pid,
                          (SELECT nullif(r.pruned_seq::text || ':' || r.pruned_id::text, '0:0')
                           FROM supabase_push.retention r) AS pruned_through,
                          h.broadcast_failures, h.last_failure
                   FROM supabase_push.health h, supabase_push.pending_v2() p""",
            ) or {}
        return Status(
            installed=True,
            schema_version=installation["schema_version"],
            installed_at=installation["installed_at"],
            updated_at=installation["updated_at"],
            broadcast_mode=installation["broadcast_mode"],
            broadcast_path=_broadcast_path(conn, installation["broadcast_mode"]),
            applied_path=None if installation["applied_path"] is None else list(installation["applied_path"]),
            private_broadcast=installation["private_broadcast"],
            routes=state["routes"],
            event_topics=state["event_topics"],
            changes=log.get("changes", 0),
            transactions=log.get("txns", 0),
            last_cursor=log.get("last_cursor"),
            last_commit_at=log.get("last_commit_at"),
            broadcast_failures=log.get("broadcast_failures", 0),
            last_failure=log.get("last_failure"),
            pruned_through=log.get("pruned_through"),
            pending_changes=log.get("pending_changes", 0),
            pending_transactions=log.get("pending_transactions", 0),
            stamped_at=log.get("stamped_at"),
            stamper_pid=log.get("stamper_pid"),
        )
    except psycopg.Error as exc:
        raise map_error(exc) from None


# ---------------------------------------------------------------- prune


@dataclass
class PruneResult:
    deleted: int
    """Changes deleted now."""
    pruned_through: str | None
    """Every change up to this cursor is gone (subscribers behind it get a gap event)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def prune(conn: Conn, older_than: timedelta) -> PruneResult:
    """Delete the changes committed more than ``older_than`` ago, in one transaction."""
    if older_than < timedelta(0):
        raise ConfigError("the retention must not be negative")
    try:
        if not _exists(conn, "to_regprocedure", "supabase_push.prune_v1(interval)"):
            raise SchemaError("the change log is not installed (or predates prune)",
                              hint="run `supabase-push apply`")
        with conn.transaction():
            row = _row(conn, "SELECT deleted, pruned_through FROM supabase_push.prune_v1(%s)", (older_than,))
    except psycopg.Error as exc:
        raise map_error(exc) from None
    assert row is not None
    through = row["pruned_through"]
    return PruneResult(deleted=int(row["deleted"]), pruned_through=None if through == "0:0" else through)


# ---------------------------------------------------------------- helpers

_PLAIN_IDENT = re.compile(r"[a-z_][a-z0-9_$]*")


def quote_ident(name: str) -> str:
    """Quote like Postgres' quote_ident() (keywords aside): only where needed."""
    return name if _PLAIN_IDENT.fullmatch(name) else '"' + name.replace('"', '""') + '"'


def _exists(conn: Conn, regfunc: Literal["to_regclass", "to_regprocedure"], name: str) -> bool:
    query = sql.SQL("SELECT pg_catalog.{}(%s) IS NOT NULL").format(sql.Identifier(regfunc))
    return bool(_scalar(conn, query, (name,)))


def _row(conn: Conn, query: str | sql.Composable, params: Iterable[Any] = ()) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, tuple(params) or None)  # type: ignore[arg-type]
        return cur.fetchone()


def _rows(conn: Conn, query: str | sql.Composable, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, tuple(params) or None)  # type: ignore[arg-type]
        return cur.fetchall()


def _scalar(conn: Conn, query: str | sql.Composable, params: Iterable[Any] = ()) -> Any:
    with conn.cursor() as cur:
        cur.execute(query, tuple(params) or None)  # type: ignore[arg-type]
        row = cur.fetchone()
        return row[0] if row else None
