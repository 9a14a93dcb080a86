"""``/auth/v1``: a small, honest Auth for local development (what GoTrue's clients call first).

Implemented: sign-up and sign-in with email and password (confirmed at once, no e-mail is
sent), anonymous sign-in, refresh with rotation, ``GET /user``, sign-out. Users live in
``auth.users`` of the served database (``sql/local_realtime.sql``), so ``auth.uid()`` and RLS
policies see them; access tokens are HS256 JWTs signed with the server's secret and carry
the claims Supabase puts in them (``sub``, ``role``, ``aud``, ``session_id``, ``exp`` ...).
Passwords are stored as scrypt hashes. Everything else GoTrue does (e-mail, OTP, OAuth,
MFA, admin API, PKCE) is not here: docs/local-server.md.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import psycopg
from aiohttp import web
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from .. import _json
from . import tokens
from .rest import credentials

__all__ = ["Auth"]

MIN_PASSWORD = 6
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    return "scrypt$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(digest).decode()


def check_password(password: str, stored: str | None) -> bool:
    try:
        kind, salt, digest = (stored or "").split("$")
    except ValueError:
        return False
    if kind != "scrypt":
        return False
    computed = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), dklen=32, **_SCRYPT)
    return hmac.compare_digest(computed, base64.b64decode(digest))


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"code": status, "error_code": code, "msg": message}, status=status)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


class Auth:
    """The routes under ``/auth/v1``. ``claims_of(key)`` checks the request's API key (TokenError if it
    is none of the project's); ``issuer()`` is the server's URL."""

    def __init__(self, database_url: str, secret: str, claims_of: Callable[[str], dict[str, Any]],
                 issuer: Callable[[], str], *, access_ttl: int = 3600) -> None:
        self._dsn = database_url
        self._secret = secret
        self._claims_of = claims_of
        self._issuer = issuer
        self.access_ttl = access_ttl
        self._conn: psycopg.AsyncConnection[dict[str, Any]] | None = None
        self._lock = asyncio.Lock()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/auth/v1/signup", self._guarded(self._signup))
        app.router.add_post("/auth/v1/token", self._guarded(self._token))
        app.router.add_get("/auth/v1/user", self._guarded(self._user))
        app.router.add_post("/auth/v1/logout", self._guarded(self._logout))
        app.router.add_get("/auth/v1/health", self._guarded(self._health))
        app.router.add_get("/auth/v1/settings", self._guarded(self._settings))

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    # -- plumbing ---------------------------------------------------------------------------

    def _guarded(self, handler: Callable[[web.Request], Any]) -> Callable[[web.Request], Any]:
        async def guarded(request: web.Request) -> web.StreamResponse:
            key, _ = credentials(request)
            if not key:
                return web.json_response({"message": "No API key found in request"}, status=401)
            try:
                self._claims_of(key)
            except tokens.TokenError:
                return web.json_response({"message": "Invalid API key"}, status=401)
            try:
                return await handler(request)  # type: ignore[no-any-return]
            except psycopg.Error as exc:
                await self.close()  # a fresh connection next time
                return _error(500, "unexpected_failure", f"database error: {exc.sqlstate or type(exc).__name__}")
        return guarded

    async def _query(self, sql: str, params: tuple[Any, ...] = ()) -> dict[str, Any] | None:
        async with self._lock:
            if self._conn is None or self._conn.closed:
                self._conn = await psycopg.AsyncConnection.connect(self._dsn, autocommit=True, row_factory=dict_row)
            cur = await self._conn.execute(sql, params)
            return await cur.fetchone() if cur.description else None

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any] | None:
        """The JSON object sent (an empty body is ``{}``), or None for anything else."""
        try:
            body = _json.loads(await request.read() or b"{}")
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def _bearer_claims(self, request: web.Request) -> dict[str, Any] | None:
        _, token = credentials(request)
        if token is None:
            return None
        try:
            claims = tokens.verify(token, self._secret)
        except tokens.TokenError:
            return None
        return claims if isinstance(claims.get("sub"), str) else None

    # -- users and sessions -----------------------------------------------------------------

    def _user_json(self, row: dict[str, Any]) -> dict[str, Any]:
        provider = "anonymous" if row["is_anonymous"] else "email"
        return {
            "id": str(row["id"]), "aud": row["aud"], "role": row["role"], "email": row["email"] or "",
            "phone": "", "email_confirmed_at": _iso(row["created_at"]) if row["email"] else None,
            "confirmed_at": _iso(row["created_at"]) if row["email"] else None,
            "last_sign_in_at": _iso(row["last_sign_in_at"]),
            "app_metadata": {"provider": provider, "providers": [provider], **(row["raw_app_meta_data"] or {})},
            "user_metadata": row["raw_user_meta_data"] or {}, "identities": [],
            "created_at": _iso(row["created_at"]), "updated_at": _iso(row["updated_at"]),
            "is_anonymous": row["is_anonymous"],
        }

    async def _session(self, row: dict[str, Any], method: str, session_id: str | None = None) -> dict[str, Any]:
        """A new access token, and a new refresh token for the session (a new session without one)."""
        session_id = session_id or str(uuid.uuid4())
        refresh = secrets.token_urlsafe(24)
        await self._query("INSERT INTO auth.refresh_tokens (token, user_id, session_id) VALUES (%s, %s, %s)",
                          (refresh, row["id"], session_id))
        signed_in = await self._query(
            "UPDATE auth.users SET last_sign_in_at = now() WHERE id = %s RETURNING *", (row["id"],))
        user = self._user_json(signed_in or row)
        now = int(time.time())
        claims = {
            "iss": self._issuer() + "/auth/v1", "sub": user["id"], "aud": "authenticated", "role": "authenticated",
            "email": user["email"], "phone": "", "app_metadata": user["app_metadata"],
            "user_metadata": user["user_metadata"], "aal": "aal1",
            "amr": [{"method": method, "timestamp": now}], "session_id": session_id,
            "is_anonymous": user["is_anonymous"], "iat": now, "exp": now + self.access_ttl,
        }
        return {"access_token": tokens.sign(claims, self._secret), "token_type": "bearer",
                "expires_in": self.access_ttl, "expires_at": now + self.access_ttl, "refresh_token": refresh,
                "user": user}

    # -- routes -----------------------------------------------------------------------------

    async def _signup(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if body is None:
            return _error(400, "bad_json", "Could not parse request body as a JSON object")
        email, password = body.get("email"), body.get("password")
        metadata = body.get("data") if isinstance(body.get("data"), dict) else {}
        if email is None and password is None:  # signInAnonymously()
            row = await self._query("INSERT INTO auth.users (is_anonymous, raw_user_meta_data) VALUES (true, %s) "
                                    "RETURNING *", (Jsonb(metadata),))
            assert row is not None
            return web.json_response(await self._session(row, "anonymous"))
        if not isinstance(email, str) or "@" not in email.strip("@"):
            return _error(400, "validation_failed", "Unable to validate email address: invalid format")
        if not isinstance(password, str) or len(password) < MIN_PASSWORD:
            return _error(422, "weak_password", f"Password should be at least {MIN_PASSWORD} characters.")
        hashed = await asyncio.to_thread(hash_password, password)
        row = await self._query(
            "INSERT INTO auth.users (email, encrypted_password, raw_user_meta_data) VALUES (lower(%s), %s, %s) "
            "ON CONFLICT (email) DO NOTHING RETURNING *", (email.strip(), hashed, Jsonb(metadata)))
        if row is None:
            return _error(422, "user_already_exists", "User already registered")
        return web.json_response(await self._session(row, "password"))

    async def _token(self, request: web.Request) -> web.Response:
        grant = request.query.get("grant_type")
        body = await self._body(request)
        if body is None:
            return _error(400, "bad_json", "Could not parse request body as a JSON object")
        if grant == "password":
            email, password = body.get("email"), body.get("password")
            row = await self._query("SELECT * FROM auth.users WHERE email = lower(%s)", (str(email or "").strip(),))
            if row is None or not isinstance(password, str) or \
                    not await asyncio.to_thread(check_password, password, row["encrypted_password"]):
                return _error(400, "invalid_credentials", "Invalid login credentials")
            return web.json_response(await self._session(row, "password"))
        if grant == "refresh_token":
            used = await self._query(
                "UPDATE auth.refresh_tokens SET revoked = true WHERE token = %s AND NOT revoked "
                "RETURNING user_id, session_id", (str(body.get("refresh_token") or ""),))
            if used is None:
                return _error(400, "refresh_token_not_found", "Invalid Refresh Token: Refresh Token Not Found")
            row = await self._query("SELECT * FROM auth.users WHERE id = %s", (used["user_id"],))
            if row is None:
                return _error(400, "refresh_token_not_found", "Invalid Refresh Token: Refresh Token Not Found")
            return web.json_response(await self._session(row, "token_refresh", str(used["session_id"])))
        return _error(400, "unsupported_grant_type", "grant_type must be password or refresh_token")

    async def _user(self, request: web.Request) -> web.Response:
        claims = self._bearer_claims(request)
        if claims is None:
            return _error(401, "bad_jwt", "invalid JWT: a user's access token is required")
        row = await self._query("SELECT * FROM auth.users WHERE id = %s", (claims["sub"],))
        if row is None:
            return _error(404, "user_not_found", "User from sub claim in JWT does not exist")
        return web.json_response(self._user_json(row))

    async def _logout(self, request: web.Request) -> web.Response:
        claims = self._bearer_claims(request)
        if claims is None:
            return _error(401, "bad_jwt", "invalid JWT: a user's access token is required")
        if request.query.get("scope", "global") == "global":
            await self._query("UPDATE auth.refresh_tokens SET revoked = true WHERE user_id = %s", (claims["sub"],))
        else:
            await self._query("UPDATE auth.refresh_tokens SET revoked = true WHERE session_id = %s",
                              (str(claims.get("session_id") or uuid.UUID(int=0)),))
        return web.Response(status=204)

    async def _health(self, _request: web.Request) -> web.Response:
        return web.json_response({"name": "supabase-push local auth", "description": "development only"})

    async def _settings(self, _request: web.Request) -> web.Response:
        return web.json_response({"external": {"email": True, "anonymous_users": True}, "disable_signup": False,
                                  "mailer_autoconfirm": True, "phone_autoconfirm": False, "sms_provider": ""})
