"""The peer for bench/fanout.py: the smallest websocket fan-out there is.

A `websockets` server that relays every text frame to every other connection with
`websockets.broadcast` (no protocol, no channels, no auth). Prints its port, then serves.
"""

from __future__ import annotations

import asyncio

from websockets.asyncio.server import ServerConnection, broadcast, serve

clients: set[ServerConnection] = set()


async def relay(ws: ServerConnection) -> None:
    clients.add(ws)
    try:
        async for frame in ws:
            broadcast([c for c in clients if c is not ws], frame)
    finally:
        clients.discard(ws)


async def main() -> None:
    async with serve(relay, "127.0.0.1", 0, compression=None) as server:
        print(next(iter(server.sockets)).getsockname()[1], flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main())
