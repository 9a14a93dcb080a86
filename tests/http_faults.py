"""An HTTP proxy in front of the local Realtime server that fails on purpose.

Each request takes the next step of ``plan`` ("429", "503", "drop", "hang", "pass");
when the plan is used up every request passes through. ``per_event_404`` answers the
per-event endpoint with 404, as a Realtime server older than 2.97 does.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection"}


@dataclass
class Seen:
    path: str
    outcome: str
    body: bytes = field(repr=False)


class FaultProxy:
    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.plan: list[str] = []
        self.per_event_404 = False
        self.seen: list[Seen] = []
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    async def __aenter__(self) -> FaultProxy:
        app = web.Application(client_max_size=10_000_000)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._session is not None and self._runner is not None
        await self._session.close()
        await self._runner.cleanup()

    def outcomes(self) -> list[str]:
        return [s.outcome for s in self.seen]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        step = self.plan.pop(0) if self.plan else "pass"
        if self.per_event_404 and "/events/" in request.path:
            step = "404"
        self.seen.append(Seen(request.path_qs, step, body))
        if step == "429":
            return web.json_response({"message": "You have exceeded your rate limit"}, status=429,
                                     headers={"Retry-After": "0"})
        if step == "503":
            return web.Response(status=503, text="<html>Service Unavailable</html>")
        if step == "404":
            return web.json_response({"message": "Not Found"}, status=404)
        if step == "hang":
            await asyncio.sleep(3600)
        if step == "drop":
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        async with self._session.request(request.method, self.target + request.path_qs, data=body,
                                         headers=headers) as upstream:
            return web.Response(status=upstream.status, body=await upstream.read(),
                                headers={"Content-Type": upstream.headers.get("Content-Type", "text/plain")})
