"""Settings read from the environment: one place for every variable the library looks at.

Keys are kept out of ``repr()`` and every message: use :func:`scrub` on any text that
might quote them (a foreign exception, a URL).
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .errors import ConfigError

__all__ = ["BACKENDS", "ENVIRONMENT", "Settings", "api_key_headers", "check_backend", "key_kind", "scrub"]

# Every variable read here, with what it is for: the README's configuration table.
ENVIRONMENT: dict[str, str] = {
    "SUPABASE_URL": "project URL, e.g. https://<ref>.supabase.co or the local server's http://127.0.0.1:54321",
    "SUPABASE_SERVICE_ROLE_KEY": "service role key (backend broadcasts; bypasses RLS). Aliases: SUPABASE_SECRET_KEY "
                                 "(an sb_secret_ key), SUPABASE_SERVICE_KEY",
    "SUPABASE_ANON_KEY": "anon key (public topics only, or what your RLS policies allow). Alias: "
                         "SUPABASE_PUBLISHABLE_KEY (an sb_publishable_ key)",
    "DATABASE_URL": "postgresql:// URL (apply/verify, NOTIFY broadcasts, LISTEN and SQL polling)",
    "SUPABASE_PUSH_BROADCAST": "broadcast backend: auto (default), rest, websocket, notify, memory, off",
    "SUPABASE_PUSH_PRIVATE": "broadcast to private topics (RLS-authorised); default true, like the triggers",
    "SUPABASE_PUSH_MAX_PAYLOAD_BYTES": "refuse larger broadcast payloads before sending; default 256000 (Free plan)",
    "SUPABASE_PUSH_REST_URL": "PostgREST base URL for reading the change log; default <SUPABASE_URL>/rest/v1",
}

BACKENDS = ("auto", "rest", "websocket", "notify", "memory", "off")
DEFAULT_MAX_PAYLOAD_BYTES = 256_000  # the Free plan's broadcast limit, the lowest of all plans

_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}



def check_backend(name: str, what: str = "the broadcast backend") -> str:
    """``name`` (any case) as a backend name, or a ConfigError naming them; ``what`` says where it was set."""
    backend = name.lower()
    if backend not in BACKENDS:
        raise ConfigError(f"{what}={name!r} is not a backend", hint="use one of " + ", ".join(BACKENDS))
    return backend

@dataclass(frozen=True)
class Settings:
    supabase_url: str | None = None
    service_role_key: str | None = field(default=None, repr=False)
    anon_key: str | None = field(default=None, repr=False)
    database_url: str | None = field(default=None, repr=False)
    broadcast_backend: str = "auto"
    private: bool = True
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        backend = check_backend(get("SUPABASE_PUSH_BROADCAST") or "auto", "SUPABASE_PUSH_BROADCAST")
        url = get("SUPABASE_URL")
        if url and not url.startswith(("http://", "https://")):
            raise ConfigError(f"SUPABASE_URL must start with http:// or https://, got {url!r}",
                              hint="use the project URL, e.g. https://<ref>.supabase.co")
        return cls(
            supabase_url=url.rstrip("/") if url else None,
            service_role_key=get("SUPABASE_SERVICE_ROLE_KEY") or get("SUPABASE_SECRET_KEY")
            or get("SUPABASE_SERVICE_KEY"),
            anon_key=get("SUPABASE_ANON_KEY") or get("SUPABASE_PUBLISHABLE_KEY"),
            database_url=get("DATABASE_URL"),
            broadcast_backend=backend,
            private=_flag(get("SUPABASE_PUSH_PRIVATE"), "SUPABASE_PUSH_PRIVATE", default=True),
            max_payload_bytes=_positive_int(get("SUPABASE_PUSH_MAX_PAYLOAD_BYTES"), "SUPABASE_PUSH_MAX_PAYLOAD_BYTES",
                                            default=DEFAULT_MAX_PAYLOAD_BYTES),
        )

    @property
    def api_key(self) -> str | None:
        """The key a backend service sends with: the service role key, else the anon key."""
        return self.service_role_key or self.anon_key

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.service_role_key, self.anon_key, self.database_url) if s)


def api_key_headers(key: str) -> dict[str, str]:
    """How a Supabase API key is sent: always as ``apikey``; a JWT (the legacy keys) also as the bearer
    token, while the new ``sb_secret_``/``sb_publishable_`` keys go in ``apikey`` only."""
    return {"apikey": key, **({"Authorization": f"Bearer {key}"} if key.count(".") == 2 else {})}


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every secret in it replaced by ``***``."""
    for secret in secrets:
        if secret and len(secret) >= 8:
            text = text.replace(secret, "***")
    return text


def _flag(value: str | None, name: str, *, default: bool) -> bool:
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ConfigError(f"{name}={value!r} is not a boolean", hint="use true or false")


def _positive_int(value: str | None, name: str, *, default: int) -> int:
    if value is None:
        return default
    if not value.isdigit() or int(value) == 0:
        raise ConfigError(f"{name}={value!r} is not a positive integer")
    return int(value)


def key_kind(key: str) -> str:
    """``service_role``, ``anon``, ``authenticated`` (a JWT's role), ``secret`` / ``publishable``
    (new-style ``sb_`` keys), ``expired`` or ``unknown``. The key is read, never verified."""
    if key.startswith("sb_secret_"):
        return "secret"
    if key.startswith("sb_publishable_"):
        return "publishable"
    try:
        body = key.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (IndexError, ValueError):
        return "unknown"
    if not isinstance(claims, dict):
        return "unknown"
    if isinstance(claims.get("exp"), int | float) and claims["exp"] < time.time():
        return "expired"
    return str(claims.get("role") or "unknown")
