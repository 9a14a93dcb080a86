"""Every test gets a real, throwaway Postgres database.

The cluster: ``SUPABASE_PUSH_TEST_DSN`` if set (a superuser URL), else one started for the
session from system binaries or the embedded wheel (:class:`LocalPostgres`; its reaper
removes it even if pytest is killed). Each test gets a fresh database copied from a
template, dropped afterwards.
"""

from __future__ import annotations

import gc
import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import conninfo, sql

from supabase_push.embedded import LocalPostgres
from supabase_push.local import LocalRealtime, ServerConfig
from supabase_push.local.stack import prepare

ROOT = Path(__file__).resolve().parent.parent


class Cluster:
    """A server we may create databases on, and the DSN of any database on it."""

    def __init__(self, admin_dsn: str, bin_dir: Path | None = None) -> None:
        self.admin_dsn = admin_dsn
        self.bin_dir = bin_dir
        self._names = itertools.count()

    def dsn_for(self, dbname: str) -> str:
        return conninfo.make_conninfo(self.admin_dsn, dbname=dbname)

    def url_for(self, dbname: str) -> str:
        """A postgresql:// URL (what users pass to --db-url)."""
        info = conninfo.conninfo_to_dict(self.admin_dsn)
        password = f":{info['password']}" if info.get("password") else ""
        return (f"postgresql://{info.get('user', 'postgres')}{password}@{info.get('host')}:"
                f"{info.get('port', 5432)}/{dbname}")

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.admin_dsn, autocommit=True)

    def create_database(self, template: str = "template1") -> str:
        name = f"sp_test_{os.getpid()}_{next(self._names)}"
        with self.admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)))
        return name

    def drop_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    external = os.environ.get("SUPABASE_PUSH_TEST_DSN")
    if external:
        yield Cluster(external)
        return
    with LocalPostgres() as pg:
        yield Cluster(pg.dsn, pg.bin_dir)


@pytest.fixture(scope="session")
def templates(cluster: Cluster) -> Iterator[dict[str, str]]:
    """Template databases: 'tables' (reference tables only), 'installed' (plus triggers)."""
    names = {"tables": cluster.create_database(), "installed": cluster.create_database()}
    for kind, name in names.items():
        with psycopg.connect(cluster.dsn_for(name), autocommit=True) as conn:
            prepare(conn, realtime=False, broadcast_mode="auto" if kind == "installed" else None)
    yield names
    for name in names.values():
        cluster.drop_database(name)


DatabaseFactory = Callable[[str], str]


@pytest.fixture
def make_db(cluster: Cluster, templates: dict[str, str]) -> Iterator[DatabaseFactory]:
    """make_db('empty' | 'tables' | 'installed') -> URL of a fresh database of that kind."""
    created: list[str] = []

    def make(kind: str = "tables") -> str:
        name = cluster.create_database("template1" if kind == "empty" else templates[kind])
        created.append(name)
        return cluster.url_for(name)

    yield make
    for name in created:
        cluster.drop_database(name)


@pytest.fixture
def db_url(make_db: DatabaseFactory) -> str:
    """A fresh database with the reference tables, nothing installed."""
    return make_db("tables")


@pytest.fixture
def installed_url(make_db: DatabaseFactory) -> str:
    """A fresh database with the reference tables and the default triggers installed."""
    return make_db("installed")


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(db_url, autocommit=True) as c:
        yield c


@pytest.fixture
def installed(installed_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(installed_url, autocommit=True) as c:
        yield c


@pytest.fixture(scope="session")
def realtime_db(cluster: Cluster) -> Iterator[str]:
    """The database behind the session's local Realtime server: reference tables, the
    server's realtime schema, then the triggers (which therefore take the realtime.send path)."""
    name = cluster.create_database()
    url = cluster.url_for(name)
    with psycopg.connect(url, autocommit=True) as c:
        prepare(c)
        c.execute("CREATE TABLE public.orders (id bigint PRIMARY KEY, symbol text, qty numeric, status text,"
                  " tags text[], placed_at timestamptz DEFAULT now(), meta jsonb)")
        c.execute("ALTER TABLE public.orders REPLICA IDENTITY FULL")
        c.execute("ALTER PUBLICATION supabase_realtime ADD TABLE public.orders")
    yield url
    cluster.drop_database(name)


@pytest.fixture(scope="session")
def realtime(realtime_db: str) -> Iterator[LocalRealtime]:
    """One local Realtime server for the session, on a free port, in its own thread."""
    with LocalRealtime(realtime_db, ServerConfig(port=0)).in_thread() as server:
        yield server


@pytest.fixture
def db(realtime_db: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """An autocommit connection to the local Realtime server's database."""
    with psycopg.connect(realtime_db, autocommit=True) as conn:
        yield conn


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    """Anything a test leaves open for the garbage collector (a connection, a socket) is reported at its own
    teardown (warnings are errors), not in whichever later test the collector happens to run."""
    yield
    gc.collect()


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see only the configuration they set themselves."""
    for key in list(os.environ):
        if key.startswith(("SUPABASE_", "PG")) and key != "SUPABASE_PUSH_TEST_DSN":
            monkeypatch.delenv(key)
    monkeypatch.delenv("DATABASE_URL", raising=False)
