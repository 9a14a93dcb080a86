"""The peer for bench/relay_fanout.py: the smallest SSE fan-out of Postgres notifications there is.

Starlette on uvicorn, one psycopg LISTEN on a channel, and every NOTIFY payload written as-is
to every open /events stream (no auth, no per-user rows, no resume, no buffer bounds).
Usage: peer_sse_relay.py <dsn> <channel>. Prints its port, then serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections.abc import AsyncIterator

import psycopg
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

queues: set[asyncio.Queue[bytes]] = set()


async def listen(dsn: str, channel: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(channel)))
        async for note in conn.notifies():
            frame = f"data: {note.payload}\n\n".encode()
            for queue in queues:
                queue.put_nowait(frame)


async def events(request: Request) -> StreamingResponse:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    queues.add(queue)

    async def body() -> AsyncIterator[bytes]:
        try:
            yield b": hello\n\n"
            while True:
                yield await queue.get()
        finally:
            queues.discard(queue)

    return StreamingResponse(body(), media_type="text/event-stream")


async def main() -> None:
    dsn, channel = sys.argv[1], sys.argv[2]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(listen(dsn, channel))
        yield
        task.cancel()

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=[Route("/events", events)], lifespan=lifespan),
                                           log_level="warning", access_log=False))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.02)
    print(sock.getsockname()[1], flush=True)
    await task


if __name__ == "__main__":
    asyncio.run(main())
