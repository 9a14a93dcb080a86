"""A TCP proxy that can freeze its open connections: a half-open socket, as far as the client can tell.

``freeze()`` stops forwarding on every connection open now (they stay open, nothing moves);
connections made afterwards pass. ``hang=True`` accepts connections and never forwards.
"""

from __future__ import annotations

import asyncio
import contextlib


class FreezingProxy:
    def __init__(self, target_port: int, *, hang: bool = False) -> None:
        self.target_port = target_port
        self.hang = hang
        self.port = 0
        self._server: asyncio.Server | None = None
        self._open: list[asyncio.Event] = []  # one "frozen" flag per connection
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> FreezingProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2)

    def freeze(self) -> int:
        for frozen in self._open:
            frozen.set()
        count, self._open = len(self._open), []
        return count

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self._writers.append(client_writer)
        if self.hang:
            await asyncio.sleep(3600)
            return
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers.append(upstream_writer)
        frozen = asyncio.Event()
        self._open.append(frozen)

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                while data := await reader.read(65536):
                    if frozen.is_set():
                        await asyncio.sleep(3600)
                    writer.write(data)
                    await writer.drain()
            writer.close()

        await asyncio.gather(pipe(client_reader, upstream_writer), pipe(upstream_reader, client_writer))
