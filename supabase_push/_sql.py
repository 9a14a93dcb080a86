"""The SQL files shipped with the package (one source of truth: the repository's sql/)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

INSTALL = "realtime_triggers.sql"
UNINSTALL = "uninstall.sql"
REFERENCE_TABLES = "reference_tables.sql"

# Must match the schema_version that sql/realtime_triggers.sql records.
SCHEMA_VERSION = 1

# Every function the install creates, with its argument types.
FUNCTIONS = (
    "supabase_push.capture_change_v1()",
    "supabase_push.envelope_v1(supabase_push.change_log,bigint,timestamp with time zone)",
    "supabase_push.broadcast_paths_v1(text)",
    "supabase_push.publish_v1(xid8,bigint,timestamp with time zone)",
    "supabase_push.stamp_commit_v1()",
    "supabase_push.fingerprint_v1()",
    "supabase_push.drop_route_v1(text,text)",
    "supabase_push.install_v1(jsonb,text,boolean)",
    "supabase_push.prune_v1(interval)",
    "public.supabase_push_changes(bigint,bigint,integer,text[])",
    "public.supabase_push_head()",
)
TABLES = (
    "supabase_push.installation",
    "supabase_push.health",
    "supabase_push.routes",
    "supabase_push.change_log",
    "supabase_push.change_txn",
    "supabase_push.topic_heads",
    "supabase_push.retention",
)


def read_sql(name: str) -> str:
    """Text of one shipped SQL file: from the wheel, or from sql/ in a source checkout."""
    packaged = resources.files("supabase_push") / "sql" / name
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    # Editable install or source checkout: the files live beside the package.
    return (Path(__file__).resolve().parent.parent / "sql" / name).read_text(encoding="utf-8")
