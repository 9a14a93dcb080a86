"""What the local server adds to a database, and how to take exactly that back.

``sql/local_realtime.sql`` creates Supabase's database side where it is missing (roles, the
``realtime`` and ``auth`` schemas, two publications) and records in
``supabase_push_local.created`` which of them it created. Once ``realtime.send()`` exists,
triggers applied in broadcast mode ``auto`` push through it instead of ``NOTIFY``: so
``supabase-push serve`` installs it on a database it did not create only when asked, says
what it added, and ``serve --clean`` removes what the record names and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors, sql

from .._sql import read_sql
from ..db import map_error

__all__ = ["Footprint", "Removal", "clean", "describe", "inspect", "install", "plan"]

LOCAL_REALTIME_SQL = "local_realtime.sql"
SEND = "realtime.send(jsonb,text,text,boolean)"

Conn = psycopg.Connection[Any]


@dataclass(frozen=True)
class Footprint:
    realtime: bool
    """``realtime.send()`` exists: triggers in mode ``auto`` push through it."""
    recorded: list[str]
    """What the local server's script created here (empty if it never ran here)."""

    @property
    def ours(self) -> bool:
        """The realtime objects here were added by ``supabase-push serve``."""
        return bool(self.recorded)


@dataclass(frozen=True)
class Removal:
    name: str
    removed: bool
    detail: str = ""


def describe(objects: list[str]) -> str:
    """``["role anon", "role service_role", "schema realtime"]`` as ``roles anon, service_role; schema realtime``."""
    by_kind: dict[str, list[str]] = {}
    for item in objects:
        kind, name = item.split(" ", 1)
        by_kind.setdefault(kind, []).append(name)
    return "; ".join(f"{kind}{'s' if len(names) > 1 else ''} {', '.join(names)}" for kind, names in by_kind.items())


def inspect(conn: Conn) -> Footprint:
    try:
        realtime = conn.execute("SELECT pg_catalog.to_regprocedure(%s) IS NOT NULL", (SEND,)).fetchone()
        recorded: list[str] = []
        if conn.execute("SELECT pg_catalog.to_regclass('supabase_push_local.created') IS NOT NULL").fetchone() \
                == (True,):
            recorded = [f"{kind} {name}" for kind, name in conn.execute(
                "SELECT kind, name FROM supabase_push_local.created ORDER BY kind, name").fetchall()]
    except psycopg.Error as exc:
        raise map_error(exc) from None
    return Footprint(realtime=bool(realtime and realtime[0]), recorded=recorded)


def plan(conn: Conn) -> list[str]:
    """What :func:`install` would create here (it runs the script and rolls it back)."""
    return _run(conn, commit=False)


def install(conn: Conn) -> list[str]:
    """Run the local server's script; what it created this time (nothing, if all was there)."""
    return _run(conn, commit=True)


def _run(conn: Conn, *, commit: bool) -> list[str]:
    if not conn.autocommit:
        raise ValueError("the local server's script needs an autocommit connection")
    body, _commit = read_sql(LOCAL_REALTIME_SQL).rstrip().rsplit("\n", 1)
    try:
        conn.execute(body.encode())
        created = [f"{kind} {name}" for kind, name in conn.execute(
            "SELECT kind, name FROM supabase_push_local.present()"
            " EXCEPT SELECT kind, name FROM supabase_push_local_before ORDER BY 1, 2").fetchall()]
        conn.execute("COMMIT" if commit else "ROLLBACK")
    except psycopg.Error as exc:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.execute("ROLLBACK")
        raise map_error(exc) from None
    return created


def clean(conn: Conn) -> list[Removal]:
    """Remove what the record names, each in its own savepoint: an object something else now
    depends on (a policy using ``auth.uid()``, a role with rights in another database) is kept
    and reported, the rest goes."""
    recorded = inspect(conn).recorded
    if not recorded:
        return []
    kinds = {kind: [r.split(" ", 1)[1] for r in recorded if r.startswith(kind + " ")]
             for kind in ("publication", "schema", "table", "function", "role")}
    removals: list[Removal] = []
    with conn.transaction():
        for name in kinds["publication"]:
            removals.append(_drop(conn, f"publication {name}", sql.SQL("DROP PUBLICATION IF EXISTS {}").format(
                sql.Identifier(name))))
        if "realtime" in kinds["schema"]:  # everything in it came with it
            removals.append(_drop(conn, "schema realtime", sql.SQL("DROP SCHEMA IF EXISTS realtime CASCADE")))
        for name in kinds["table"]:
            if not (name.startswith("realtime.") and "realtime" in kinds["schema"]):
                removals.append(_drop(conn, f"table {name}", sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(
                    _qualified(name))))
        for name in kinds["function"]:
            if not (name.startswith("realtime.") and "realtime" in kinds["schema"]):
                schema_name, rest = name.split(".", 1)
                function, args = rest.rstrip(")").split("(", 1)
                removals.append(_drop(conn, f"function {name}", sql.SQL("DROP FUNCTION IF EXISTS {}.{}({})").format(
                    sql.Identifier(schema_name), sql.Identifier(function), sql.SQL(args))))
        if "auth" in kinds["schema"]:
            removals.append(_drop(conn, "schema auth", sql.SQL("DROP SCHEMA IF EXISTS auth")))
        for name in kinds["role"]:
            removals.append(_drop_role(conn, name))
        if all(r.removed for r in removals):
            conn.execute("DROP SCHEMA supabase_push_local CASCADE")
        else:  # what was kept stays on the record, for a later --clean
            kept = [r.name for r in removals if not r.removed]
            conn.execute("DELETE FROM supabase_push_local.created WHERE kind || ' ' || name <> ALL (%s)", (kept,))
    return removals


def _qualified(name: str) -> sql.Composable:
    schema_name, table = name.split(".", 1)
    return sql.Identifier(schema_name, table)


def _drop(conn: Conn, label: str, statement: sql.SQL | sql.Composed) -> Removal:
    try:
        with conn.transaction():
            conn.execute(statement)
    except errors.DependentObjectsStillExist as exc:
        return Removal(label, False, f"kept: {_why(exc)}")
    except psycopg.Error as exc:
        raise map_error(exc) from None
    return Removal(label, True)


def _drop_role(conn: Conn, role: str) -> Removal:
    """A role we created, once the schemas holding its grants from our script are gone. It is kept,
    and the reason named, if it owns objects or holds rights granted since (by you, or by ``apply``
    to service_role): dropping it would take those away."""
    label = f"role {role}"
    owns = conn.execute(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_class WHERE relowner = r.oid)"
        " OR EXISTS (SELECT FROM pg_catalog.pg_proc WHERE proowner = r.oid)"
        " OR EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspowner = r.oid)"
        " FROM pg_catalog.pg_roles r WHERE r.rolname = %s", (role,)).fetchone()
    if owns is None:
        return Removal(label, True, "already gone")
    if owns[0]:
        return Removal(label, False, "kept: it owns objects in this database")
    try:
        with conn.transaction():
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
    except errors.DependentObjectsStillExist as exc:
        return Removal(label, False, f"kept: {_why(exc)}")
    except psycopg.Error as exc:
        raise map_error(exc) from None
    return Removal(label, True)


def _why(exc: psycopg.Error) -> str:
    """What depends on the object (Postgres names it in the detail), else the message."""
    return (exc.diag.message_detail or str(exc)).strip().replace("\n", "; ")
