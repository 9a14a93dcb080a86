"""Serving the relay app with uvicorn on a socket we bind (so port 0 works and the URL is known)."""

from __future__ import annotations

import asyncio
import logging
import socket
from types import TracebackType

import uvicorn
from starlette.applications import Starlette

from ..errors import ConfigError

__all__ = ["RelayServer"]


class _QuietCutOffs(logging.Filter):
    """The relay cuts slow streams off by leaving their response incomplete; uvicorn calls that an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "ASGI callable returned without completing response."


logging.getLogger("uvicorn.error").addFilter(_QuietCutOffs())


class RelayServer:
    """``async with RelayServer(create_app(config), port=0) as server: server.url``"""

    def __init__(self, app: Starlette, *, host: str = "127.0.0.1", port: int = 8787,
                 shutdown_grace: int = 1) -> None:
        self.host, self.port = host, port
        # access_log off: EventSource puts the token in the query string, and a log line must never show it
        self.app = app
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                                                     timeout_graceful_shutdown=shutdown_grace))
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> RelayServer:
        await self.app.state.relay.prepare()  # here, not in uvicorn's lifespan, so a failure raises as itself
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise ConfigError(f"cannot listen on {self.host}:{self.port}: {exc.strerror}",
                              hint="pick another --port, or 0 for a free one") from None
        self.port = sock.getsockname()[1]
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="supabase-push-relay")
        while not self._server.started:
            if self._task.done():  # the app's startup failed: uvicorn logged why
                await self._task
                raise ConfigError("the relay did not start (see the error above)")
            await asyncio.sleep(0.02)
        return self

    async def wait(self) -> None:
        """Until the server stops (Ctrl-C or SIGTERM, which uvicorn handles)."""
        if self._task is not None:
            await self._task

    async def stop(self) -> None:
        if self._task is not None:
            self._server.should_exit = True
            await self._task
            self._task = None

    async def __aenter__(self) -> RelayServer:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()
