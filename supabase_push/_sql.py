"""The SQL files shipped with the package (one source of truth: the repository's sql/)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

INSTALL = "realtime_triggers.sql"
UNINSTALL = "uninstall.sql"
REFERENCE_TABLES = "reference_tables.sql"
MIGRATIONS = "migrations"

# Must match the schema_version that sql/realtime_triggers.sql records.
SCHEMA_VERSION = 9

# Every function the install creates, with its argument types.
FUNCTIONS = (
    "supabase_push.capture_change_v1()",
    "supabase_push.capture_partitioned_change_v1()",
    "supabase_push.envelope_v1(supabase_push.change_log,bigint,timestamp with time zone)",
    "supabase_push.broadcast_paths_v1(text)",
    "supabase_push.publish_v2(bigint,bigint,jsonb)",
    "supabase_push.stamped_until_v4(pg_snapshot,bigint)",
    "supabase_push.unstamped_v4(pg_snapshot,pg_snapshot)",
    "supabase_push.stamp_v2(boolean)",
    "supabase_push.stamp_loop_v2(double precision,double precision,double precision,boolean)",
    "supabase_push.pending_v2()",
    "supabase_push.fingerprint_v1()",
    "supabase_push.drop_route_v1(text,text)",
    "supabase_push.published_v1(oid)",
    "supabase_push.trigger_call_v1(oid,text)",
    "supabase_push.install_v1(jsonb,text,boolean)",
    "supabase_push.prune_v1(interval)",
    "supabase_push.publish(text,text,jsonb,text)",
    "supabase_push.declare_event_topics_v1(jsonb)",
    "public.supabase_push_changes(bigint,bigint,integer,text[])",
    "public.supabase_push_head()",
    "public.supabase_push_topics()",
    "public.supabase_push_stamp()",
    "public.supabase_push_publish(text,text,jsonb,text)",
    "public.supabase_push_snapshot_start(text[])",
    "public.supabase_push_snapshot_open(text[])",
    "public.supabase_push_snapshot_page(uuid,bigint,integer)",
    "public.supabase_push_snapshot_close(uuid)",
    "supabase_push.forget_snapshots_v3(uuid)",
)
TABLES = (
    "supabase_push.installation",
    "supabase_push.health",
    "supabase_push.routes",
    "supabase_push.change_log",
    "supabase_push.commits",
    "supabase_push.retention",
    "supabase_push.event_topics",
    "supabase_push.event_keys",
    "supabase_push.snapshot_rows",
)


def read_sql(name: str) -> str:
    """Text of one shipped SQL file: from the wheel, or from sql/ in a source checkout."""
    packaged = resources.files("supabase_push") / "sql" / name
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    # Editable install or source checkout: the files live beside the package.
    return (_source_dir() / name).read_text(encoding="utf-8")


def _source_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "sql"


@dataclass(frozen=True)
class Migration:
    """The two scripts that take the schema from ``version - 1`` to ``version`` (procrastinate's layout):
    ``pre`` runs in the same transaction as the install script, ``post`` in one of its own after it."""

    version: int
    pre: str
    post: str | None

    @property
    def summary(self) -> str:
        """What it does, from its file's first line (``-- supabase-push schema 1 -> 2, ...: <summary>``)."""
        first = read_sql(self.pre).partition("\n")[0]
        return f"{self.version:04d}: {first.rpartition(': ')[2].rstrip('.') or self.pre}"


_MIGRATION_FILE = re.compile(r"(\d{4})_(pre|post)_[a-z0-9_]+\.sql")


def migration_files() -> list[str]:
    """The names of sql/migrations/*.sql, in order."""
    packaged = resources.files("supabase_push") / "sql" / MIGRATIONS
    names = [entry.name for entry in packaged.iterdir()] if packaged.is_dir() else \
        [path.name for path in (_source_dir() / MIGRATIONS).iterdir()]
    return sorted(name for name in names if _MIGRATION_FILE.fullmatch(name))


def migrations_from(version: int) -> list[Migration]:
    """What takes a schema of ``version`` to :data:`SCHEMA_VERSION`, in order."""
    files = migration_files()
    found = []
    for target in range(version + 1, SCHEMA_VERSION + 1):
        pre = [name for name in files if name.startswith(f"{target:04d}_pre_")]
        post = [name for name in files if name.startswith(f"{target:04d}_post_")]
        if len(pre) != 1 or len(post) > 1:
            raise LookupError(f"no single migration to schema version {target} in sql/{MIGRATIONS}")
        found.append(Migration(target, f"{MIGRATIONS}/{pre[0]}", f"{MIGRATIONS}/{post[0]}" if post else None))
    return found
