"""Who is asking: a JWT (HS256 with a shared secret, or RS256/ES256 keys from a JWKS URL) to a Principal."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt

from ..errors import ConfigError, SupabasePushError

log = logging.getLogger("supabase_push.relay")

__all__ = ["Authenticator", "KeySet", "Principal", "Refused"]

_ASYMMETRIC = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA"]


class Refused(SupabasePushError):
    """The relay refuses a request; ``status`` is the HTTP status it answers with: 401 (no or bad
    token), 403 (not allowed), 400 (a bad parameter), 429 (too many streams), 503 (cannot check now)."""

    def __init__(self, message: str, *, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Principal:
    user_id: str
    tier: str | None = None
    admin: bool = False
    """The service role: every row, every topic, and /stats."""
    claims: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def expires_in(self) -> float:
        """Seconds until the token's ``exp`` (the relay checked it is there and in the future)."""
        exp = self.claims.get("exp")
        return max(0.0, float(exp) - time.time()) if isinstance(exp, int | float) else float("inf")


class Authenticator:
    """Verifies tokens the way Supabase issues them: ``sub`` is the user, ``role`` service_role is admin.

    ``tier_claim`` is a dotted path into the claims (Supabase keeps custom claims in
    ``app_metadata``). ``audience``, when given, must match ``aud``; without it a token may carry no
    ``aud`` (Supabase's API keys) or Supabase's ``authenticated``, and any other audience is refused:
    a token minted for another service is not one for the relay.
    """

    def __init__(self, *, secret: str | None = None, jwks_url: str | None = None, key_set: KeySet | None = None,
                 audience: str | None = None, tier_claim: str = "app_metadata.tier", admin_role: str = "service_role",
                 leeway: float = 0) -> None:
        if [bool(secret), bool(jwks_url), key_set is not None].count(True) != 1:
            raise ConfigError("the relay needs exactly one of a JWT secret or a JWKS URL",
                              hint="--jwt-secret (SUPABASE_JWT_SECRET) or --jwks-url "
                                   "(https://<project>.supabase.co/auth/v1/.well-known/jwks.json)")
        self._secret = secret
        self._jwks = key_set or (KeySet(jwks_url) if jwks_url else None)
        self.audience = audience
        self.tier_claim = tier_claim.split(".")
        self.admin_role = admin_role
        self.leeway = leeway

    async def authenticate(self, token: str | None) -> Principal:
        if not token:
            raise Refused("no token: send 'Authorization: Bearer <jwt>' or ?access_token=<jwt>")
        try:
            if self._jwks is not None:
                key: Any = await self._jwks.key_for(jwt.get_unverified_header(token).get("kid"))
                algorithms = _ASYMMETRIC
            else:
                key, algorithms = self._secret, ["HS256"]
            claims = jwt.decode(token, key, algorithms=algorithms, audience=self.audience, leeway=self.leeway,
                                options={"require": ["exp"], "verify_aud": self.audience is not None})
        except jwt.InvalidTokenError as exc:
            raise Refused(f"token not accepted: {exc}") from None
        return self._principal(claims)

    def jwks(self) -> dict[str, Any] | None:
        """The key set's state (see :meth:`KeySet.status`), or None with an HS256 secret."""
        return self._jwks.status() if self._jwks is not None else None

    def _principal(self, claims: dict[str, Any]) -> Principal:
        aud = claims.get("aud")
        if self.audience is None and aud is not None and "authenticated" not in (aud if isinstance(aud, list)
                                                                                 else [aud]):
            raise Refused(f"token not accepted: its audience {aud!r} is not the relay's "
                          "(it takes 'authenticated' tokens; --audience names another)")
        for name in ("exp", "iat", "nbf"):  # numbers, as RFC 7519 says: a string exp must not dodge the expiry timer
            if name in claims and (isinstance(claims[name], bool) or not isinstance(claims[name], int | float)):
                raise Refused(f"token not accepted: its {name!r} claim is not a number")
        admin = claims.get("role") == self.admin_role
        user = claims.get("sub")
        if not isinstance(user, str) or not user:
            if not admin:
                raise Refused("token not accepted: it names no user ('sub')")
            user = self.admin_role
        tier: Any = claims
        for part in self.tier_claim:
            tier = tier.get(part) if isinstance(tier, Mapping) else None
        return Principal(user_id=user, tier=tier if isinstance(tier, str) else None, admin=admin, claims=claims)


class KeySet:
    """The signing keys at a JWKS URL, fetched without blocking and kept for ``lifespan`` seconds.

    A token naming a key id that is not in the set makes it fetch again, at most once per
    ``min_refresh`` seconds: keys rotate, but tokens with made-up ids must not make the relay
    hammer the URL. One fetch at a time: requests that arrive while it runs share its outcome.
    While the URL is down the last good keys stay in use (``stale`` in :meth:`status`, and a
    warning once); only with no keys at all is a token refused, with a 503."""

    def __init__(self, url: str, *, lifespan: float = 300, min_refresh: float = 30, timeout: float = 10) -> None:
        self.url = url
        self.lifespan, self.min_refresh, self.timeout = lifespan, min_refresh, timeout
        self.fetches = 0
        """Fetch attempts finished, good or not."""
        self._keys: dict[str | None, Any] = {}
        self._fetched = float("-inf")  # the last good fetch
        self._tried = float("-inf")  # the last attempt
        self._error: str | None = None  # why the last attempt failed (None: it did not)
        self._lock = asyncio.Lock()
        self._refreshing: asyncio.Task[None] | None = None

    async def key_for(self, kid: str | None) -> Any:
        now = time.monotonic()
        known = kid in self._keys or (kid is None and len(self._keys) == 1)
        retry_after = self.min_refresh if self._keys else 1.0  # with no keys at all, try again soon
        if self._lock.locked() and not known:  # a fetch is under way: its outcome is this request's too
            await self._refresh(self.fetches)
        elif now - self._tried > retry_after and (now - self._fetched > self.lifespan or not known):
            if known:  # the cached key still serves: refresh behind this request, not in front of it
                if self._refreshing is None or self._refreshing.done():
                    self._refreshing = asyncio.create_task(self._refresh(self.fetches))
            else:
                await self._refresh(self.fetches)
        if not self._keys and self._error is not None:
            raise Refused(f"cannot fetch the signing keys (JWKS) to check the token: {self._error}", status=503)
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        if kid not in self._keys:
            raise Refused(f"token not accepted: no signing key {kid!r} at the JWKS URL")
        return self._keys[kid]

    async def _refresh(self, attempt: int) -> None:
        async with self._lock:
            if self.fetches == attempt:  # else a request that came first fetched while this one waited
                try:
                    await self._fetch()
                finally:
                    self.fetches += 1

    def status(self) -> dict[str, Any]:
        """For ``/stats``: how old the keys are, and whether the URL failed since (``stale``)."""
        age = time.monotonic() - self._fetched
        return {"url": self.url, "keys": len(self._keys), "age_s": round(age, 1) if self._keys else None,
                "stale": self._error is not None and bool(self._keys), "last_error": self._error,
                "fetches": self.fetches}

    async def _fetch(self) -> None:
        self._tried = time.monotonic()
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as http:
                response = await http.get(self.url)
            response.raise_for_status()
            keys = jwt.PyJWKSet.from_dict(response.json()).keys
        except (httpx.HTTPError, ValueError, jwt.PyJWKSetError) as exc:
            if self._error is None and self._keys:
                log.warning("relay: cannot refresh the signing keys from %s (%s): using the last good ones",
                            self.url, type(exc).__name__)
            self._error = type(exc).__name__
            return
        if self._error is not None and self._keys:
            log.warning("relay: the signing keys at %s can be fetched again", self.url)
        self._keys = {key.key_id: key.key for key in keys}
        self._fetched = time.monotonic()
        self._error = None
