"""Connecting to Postgres, and turning driver errors into supabase-push errors."""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import conninfo, errors

from .errors import (
    AuthenticationError,
    ConfigError,
    ConnectError,
    DatabaseError,
    MissingTableError,
    PermissionDeniedError,
)

__all__ = ["aconnect", "connect", "describe_dsn", "map_error", "redact_dsn"]

DEFAULT_CONNECT_TIMEOUT = 10  # seconds; libpq's minimum is 2
NO_URL_HINT = "pass --db-url or set DATABASE_URL (postgresql://user:password@host:5432/dbname)"


def connect_timeout() -> int:
    """Seconds to wait for a server (SUPABASE_PUSH_CONNECT_TIMEOUT, default 10, at least 2)."""
    raw = os.environ.get("SUPABASE_PUSH_CONNECT_TIMEOUT", "")
    try:
        return max(2, int(raw)) if raw else DEFAULT_CONNECT_TIMEOUT
    except ValueError:
        raise ConfigError(f"SUPABASE_PUSH_CONNECT_TIMEOUT must be whole seconds, got {raw!r}") \
            from None


def redact_dsn(dsn: str) -> str:
    """The DSN without its password or query string, safe for logs and errors."""
    if "://" in dsn:
        try:
            parts = urlsplit(dsn)
        except ValueError:  # malformed: cut the password and the query string by hand
            return re.sub(r"//([^:/@]*):[^@]*@", r"//\1@", dsn.split("?")[0])
        netloc = parts.netloc.rsplit("@", 1)
        if len(netloc) == 2:
            user = netloc[0].split(":", 1)[0]
            host = f"{user}@{netloc[1]}" if user else netloc[1]
        else:
            host = netloc[0]
        return urlunsplit((parts.scheme, host, parts.path, "", ""))
    return re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", dsn)


def describe_dsn(dsn: str) -> str:
    """``user@host:port/dbname`` for humans."""
    try:
        info = conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return redact_dsn(dsn)
    host = str(info.get("host") or "localhost")
    port = str(info.get("port") or "5432")
    user = str(info.get("user") or "")
    dbname = str(info.get("dbname") or user or "")
    return f"{user + '@' if user else ''}{host}:{port}/{dbname}"


def connect(dsn: str | None, *, autocommit: bool = True) -> psycopg.Connection[tuple[object, ...]]:
    """Open a connection, or raise a ConfigError/ConnectError/AuthenticationError."""
    dsn = _checked(dsn)
    try:
        conn = psycopg.connect(dsn, autocommit=autocommit, connect_timeout=connect_timeout(),
                               application_name="supabase-push")
        if not _iso_dates(conn):
            conn.execute(_ISO_DATES)
            if not autocommit:
                conn.commit()
        return conn
    except psycopg.Error as exc:
        raise map_error(exc, dsn) from None


async def aconnect(dsn: str | None, *, autocommit: bool = True) -> psycopg.AsyncConnection[tuple[object, ...]]:
    """:func:`connect` for asyncio."""
    dsn = _checked(dsn)
    try:
        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=autocommit, connect_timeout=connect_timeout(),
                                                     application_name="supabase-push")
        if not _iso_dates(conn):
            await conn.execute(_ISO_DATES)
            if not autocommit:
                await conn.commit()
        return conn
    except psycopg.Error as exc:
        raise map_error(exc, dsn) from None


# psycopg reads a date or time in text only as ISO writes it, and a database or role may be set to another
# DateStyle (SQL, German, Postgres): our own sessions read ISO, whatever the user's keep. The day and month
# order is left as it is set.
_ISO_DATES = "SET DateStyle = ISO"


def _iso_dates(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    return (conn.info.parameter_status("DateStyle") or "ISO").startswith("ISO")


def _checked(dsn: str | None) -> str:
    if not dsn:
        raise ConfigError("no database URL", hint=NO_URL_HINT)
    try:
        conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise ConfigError(
            f"malformed database URL {redact_dsn(dsn)!r}: {_first_line(exc)}", hint=NO_URL_HINT
        ) from None
    return dsn


def map_error(exc: psycopg.Error, dsn: str | None = None) -> DatabaseError:
    """The most specific supabase-push error for a driver error."""
    where = f" at {describe_dsn(dsn)}" if dsn else ""
    text = _first_line(exc)
    if dsn:
        text = text.replace(dsn, redact_dsn(dsn))
    if isinstance(exc, errors.InvalidPassword | errors.InvalidAuthorizationSpecification) or (
        "authentication failed" in text or "no password supplied" in text
    ):
        return AuthenticationError(
            f"the database refused the credentials{where}: {text}",
            hint="check the user and password in the database URL",
        )
    if isinstance(exc, errors.InsufficientPrivilege):
        return PermissionDeniedError(
            f"permission denied{where}: {text}",
            hint="connect as the owner of the tables or a role with CREATE on the database "
            "(on Supabase: the postgres role, from the project's connection string)",
        )
    if isinstance(exc, errors.UndefinedTable):
        return MissingTableError(
            text.removeprefix("supabase_push: "),
            hint=_diag(exc).message_hint or "create the table, or route another table",
        )
    if isinstance(exc, errors.InvalidCatalogName):
        return ConnectError(f"database does not exist{where}: {text}",
                            hint="check the database name at the end of the URL")
    if isinstance(exc, psycopg.OperationalError) and exc.sqlstate is None:
        return ConnectError(
            f"cannot reach the database{where}: {text}",
            hint="check the host and port, that the server is running, and that the network "
            f"allows it (gives up after {connect_timeout()} s: SUPABASE_PUSH_CONNECT_TIMEOUT)",
        )
    if text.startswith("supabase_push: "):  # raised by our own SQL, which says what is wrong
        return DatabaseError(text.removeprefix("supabase_push: "), hint=_diag(exc).message_hint)
    return DatabaseError(f"database error{where}: {text}", hint=_diag(exc).message_hint)


class _NoDiag:
    message_hint: str | None = None


def _diag(exc: psycopg.Error) -> psycopg.errors.Diagnostic | _NoDiag:
    return exc.diag if exc.sqlstate else _NoDiag()


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
