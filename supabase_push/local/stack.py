"""A local Supabase to run against: a throwaway Postgres prepared as a new project's database, with the
triggers applied, and the local server on it. ``serve``, ``demo``, the tests and the benchmarks build theirs
here; :func:`prepare` is the one place a database is made to look like a Supabase project's."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .. import schema
from .._sql import REFERENCE_TABLES, read_sql
from ..db import connect
from ..embedded import LocalPostgres
from . import footprint
from .server_config import ServerConfig

if TYPE_CHECKING:
    from .server import LocalRealtime

__all__ = ["LocalStack", "StackSettings", "prepare"]

SUPABASE_GRANTS = """
GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
GRANT ALL ON ALL TABLES IN SCHEMA public TO anon, authenticated, service_role;
GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO anon, authenticated, service_role;
GRANT ALL ON ALL ROUTINES IN SCHEMA public TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON SEQUENCES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON ROUTINES TO anon, authenticated, service_role;
"""
"""The rights a new Supabase project gives its API roles in ``public``: row level security decides, through
/rest/v1."""


def prepare(conn: Any, *, tables: bool = True, realtime: bool = True, grants: bool = False,
            broadcast_mode: schema.BroadcastMode | None = "auto") -> schema.ApplyResult | None:
    """Make the database of ``conn`` (autocommit) look like a Supabase project's with supabase-push installed:
    the reference tables (``positions``, ``trades``, ``portfolio_snapshots``), the local server's database side
    (the realtime schema, roles, publications: first, so that the triggers push through ``realtime.send``),
    Supabase's default grants, then the triggers in ``broadcast_mode`` (None: no triggers). What ``apply``
    did, or None."""
    if tables:
        conn.execute(read_sql(REFERENCE_TABLES).encode())
    if realtime:
        footprint.install(conn)
    if grants:
        conn.execute(SUPABASE_GRANTS.encode())
    return None if broadcast_mode is None else schema.apply(conn, broadcast_mode=broadcast_mode)


def _default_server() -> ServerConfig:
    return ServerConfig(port=0)


@dataclass(frozen=True)
class StackSettings:
    """What a :class:`LocalStack` starts."""

    broadcast_mode: schema.BroadcastMode = "auto"
    """The triggers' broadcast mode (``both``: Realtime and NOTIFY)."""
    grants: bool = True
    """Supabase's default grants to anon, authenticated and service_role."""
    server: ServerConfig | None = field(default_factory=_default_server)
    """The local server's settings (a free port by default); None: no server."""
    postgres: dict[str, str] | None = None
    """Settings for the throwaway cluster (``postgresql.conf`` names)."""


class LocalStack:
    """``async with LocalStack() as stack``: a throwaway Postgres with the reference tables, prepared by
    :func:`prepare`, and the local server on it (``stack.server``: its URL and keys); all of it gone on exit.

    With ``database_url``, no cluster is made and nothing is prepared: the server runs on that database as it
    is (``serve --db-url``, after its own checks)."""

    def __init__(self, settings: StackSettings | None = None, *, database_url: str | None = None) -> None:
        self.settings = settings or StackSettings()
        self.postgres: LocalPostgres | None = None
        self.applied: schema.ApplyResult | None = None
        self.server: LocalRealtime | None = None
        self._database_url = database_url

    @property
    def database_url(self) -> str:
        if self._database_url is None:
            raise RuntimeError("the stack has not started")
        return self._database_url

    async def start(self) -> LocalStack:
        try:
            if self._database_url is None:
                self.postgres = await asyncio.to_thread(LocalPostgres(settings=self.settings.postgres).start)
                self._database_url = self.postgres.dsn
                self.applied = await asyncio.to_thread(self._prepare)
            if self.settings.server is not None:
                from .server import LocalRealtime

                self.server = await LocalRealtime(self.database_url, self.settings.server).start()
        except BaseException:
            await self.stop()
            raise
        return self

    def _prepare(self) -> schema.ApplyResult | None:
        with connect(self.database_url) as conn:
            return prepare(conn, grants=self.settings.grants, broadcast_mode=self.settings.broadcast_mode)

    async def stop(self) -> None:
        server, self.server = self.server, None
        postgres, self.postgres = self.postgres, None
        try:
            if server is not None:
                await server.stop()
        finally:
            if postgres is not None:
                await asyncio.to_thread(postgres.stop)

    async def __aenter__(self) -> LocalStack:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()
