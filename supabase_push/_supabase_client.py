"""A supabase-py client (sync ``Client`` or ``AsyncClient``) as the source of a project URL, a key and
a user's session, for :meth:`Broadcaster.from_supabase` and :meth:`Subscriber.from_supabase`.

Only attributes the client has had throughout 2.x are read (``supabase_url``, ``supabase_key``,
``auth.get_session()``), so this needs no import of ``supabase``.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from .config import Settings, key_kind
from .errors import ConfigError

__all__ = ["SessionToken", "session_token", "settings_of"]

SessionToken = Callable[[], Awaitable[str | None]]
"""The signed-in user's current access token, or None while nobody is signed in (the key is used)."""


def settings_of(client: Any) -> Settings:
    """The client's project URL, and its key as the service role or the anon key (by what it is)."""
    url, key = getattr(client, "supabase_url", None), getattr(client, "supabase_key", None)
    if not url or not isinstance(key, str) or not key:
        raise ConfigError(f"{type(client).__name__} is not a supabase client (no supabase_url and supabase_key)",
                          hint="pass what supabase.create_client() or supabase.acreate_client() returned")
    server_side = key_kind(key) in ("service_role", "secret")
    return Settings(supabase_url=str(url).rstrip("/"), service_role_key=key if server_side else None,
                    anon_key=None if server_side else key)


def session_token(client: Any) -> SessionToken:
    """Reads the client's session on every call, so a sign-in, a refresh or a sign-out is followed."""

    async def token() -> str | None:
        session = client.auth.get_session()
        if inspect.isawaitable(session):
            session = await session
        access = getattr(session, "access_token", None)
        return access if isinstance(access, str) and access else None

    return token
