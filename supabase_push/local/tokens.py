"""HS256 JWTs: what Supabase Realtime checks (signature, ``role``, ``exp``) and nothing more."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

from .. import _json

# The secret the Supabase CLI's local stack uses: keys minted by either work with the other.
DEV_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"  # noqa: S105 (public, dev only)


class TokenError(Exception):
    """A token Realtime refuses; ``code`` is Supabase's error code (``InvalidJWTToken`` ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(claims: dict[str, Any], secret: str) -> str:
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signature = hmac.new(secret.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64(signature)}"


def mint(role: str, secret: str, *, ttl: float = 10 * 365 * 86400, **claims: Any) -> str:
    """A key like Supabase's anon/service_role keys (``iss`` supabase-push, ``exp`` ttl away)."""
    now = int(time.time())
    return sign({"iss": "supabase-push", "role": role, "iat": now, "exp": now + int(ttl), **claims}, secret)


API_KEY_ROLES = {"publishable": "anon", "secret": "service_role"}
"""The new-style keys Supabase projects print, and the role each stands for."""


def api_keys(secret: str) -> dict[str, str]:
    """``sb_publishable_...`` and ``sb_secret_...`` keys, shaped like the Supabase CLI's (a random-looking
    body, then a checksum) and derived from ``secret``, so a restarted server prints the same ones."""
    keys = {}
    for kind in API_KEY_ROLES:
        body = _b64(hmac.new(secret.encode(), f"supabase-push {kind} key".encode(), hashlib.sha256).digest())[:22]
        check = _b64(hashlib.sha256(f"sb_{kind}_{body}".encode()).digest())[:8]
        keys[kind] = f"sb_{kind}_{body}_{check}"
    return keys


IAT_LEEWAY = 60.0
"""Seconds a token's ``iat`` may be ahead of this clock (another host's clock may run a little fast)."""


def verify(token: str | None, secret: str, *, now: float | None = None) -> dict[str, Any]:
    """The claims of a valid token, else TokenError with the code Realtime would give."""
    if not token:
        raise TokenError("InvalidJWTToken", "no token given")
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("MalformedJWT", "The token provided is not a valid JWT")
    try:
        header = _json.loads(_unb64(parts[0]))
        claims = _json.loads(_unb64(parts[1]))
        signature = _unb64(parts[2])
    except ValueError:
        raise TokenError("MalformedJWT", "The token provided is not a valid JWT") from None
    if not isinstance(header, dict) or header.get("alg") != "HS256" or not isinstance(claims, dict):
        raise TokenError("JwtSignatureError", "Failed to validate JWT signature (HS256 only)")
    expected = hmac.new(secret.encode(), f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(signature, expected):
        raise TokenError("JwtSignatureError", "Failed to validate JWT signature")
    if not isinstance(claims.get("role"), str) or not isinstance(claims.get("exp"), int | float):
        raise TokenError("InvalidJWTToken", "Fields `role` and `exp` are required in JWT")
    current = time.time() if now is None else now
    if isinstance(claims.get("nbf"), int | float) and current < claims["nbf"]:
        raise TokenError("InvalidJWTToken", "Token is not valid yet (nbf)")
    if isinstance(claims.get("iat"), int | float) and claims["iat"] > current + IAT_LEEWAY:
        raise TokenError("InvalidJWTToken", "Token is not valid yet (issued in the future: iat)")
    expired_for = current - claims["exp"]
    if expired_for >= 0:
        raise TokenError("InvalidJWTToken", f"Token has expired {int(expired_for)} seconds ago")
    return claims
