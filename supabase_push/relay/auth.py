"""Who is asking: a JWT (HS256 with a shared secret, or RS256/ES256 keys from a JWKS URL) to a Principal."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt

from ..errors import ConfigError, SupabasePushError

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
    ``app_metadata``). ``audience``, when given, must match ``aud``.
    """

    def __init__(self, *, secret: str | None = None, jwks_url: str | None = None, audience: str | None = None,
                 tier_claim: str = "app_metadata.tier", admin_role: str = "service_role", leeway: float = 0) -> None:
        if bool(secret) == bool(jwks_url):
            raise ConfigError("the relay needs exactly one of a JWT secret or a JWKS URL",
                              hint="--jwt-secret (SUPABASE_JWT_SECRET) or --jwks-url "
                                   "(https://<project>.supabase.co/auth/v1/.well-known/jwks.json)")
        self._secret = secret
        self._jwks = KeySet(jwks_url) if jwks_url else None
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

    def _principal(self, claims: dict[str, Any]) -> Principal:
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
    hammer the URL."""

    def __init__(self, url: str, *, lifespan: float = 300, min_refresh: float = 30, timeout: float = 10) -> None:
        self.url = url
        self.lifespan, self.min_refresh, self.timeout = lifespan, min_refresh, timeout
        self.fetches = 0
        self._keys: dict[str | None, Any] = {}
        self._fetched = float("-inf")
        self._lock = asyncio.Lock()

    async def key_for(self, kid: str | None) -> Any:
        seen = self._fetched
        age = time.monotonic() - seen
        if age > self.lifespan or (kid not in self._keys and age > self.min_refresh):
            async with self._lock:
                if self._fetched == seen:  # else a burst of new streams got it fetched while we waited
                    await self._fetch()
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        if kid not in self._keys:
            raise Refused(f"token not accepted: no signing key {kid!r} at the JWKS URL")
        return self._keys[kid]

    async def _fetch(self) -> None:
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as http:
                response = await http.get(self.url)
            response.raise_for_status()
            keys = jwt.PyJWKSet.from_dict(response.json()).keys
        except (httpx.HTTPError, ValueError, jwt.PyJWKSetError) as exc:
            raise Refused(f"cannot fetch the signing keys (JWKS) to check the token: {type(exc).__name__}",
                          status=503) from None
        self._keys = {key.key_id: key.key for key in keys}
        self._fetched = time.monotonic()
        self.fetches += 1
