"""Local stand-ins for the far ends of alerts: an HTTP server that fails as told, then recovers,
and a real SMTP server (aiosmtpd) that can be taken down and brought back."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email import message_from_bytes
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller

from .local_http import QuietHandler, ThreadedHttp
from .postgrest import free_port


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float


Plan = Callable[[int], tuple[int, dict[str, str]]]
"""Request number (1, 2, ...) -> (status, extra headers)."""


def fail_first(count: int, status: int = 503, headers: dict[str, str] | None = None) -> Plan:
    return lambda n: (status, headers or {}) if n <= count else (200, {})


class HttpSinkServer:
    """Records every POST it accepts (a 2xx); answers by ``plan``."""

    def __init__(self, plan: Plan = lambda n: (200, {})) -> None:
        self.plan = plan
        self.received: list[Received] = []
        self.requests = 0
        lock = threading.Lock()
        outer = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with lock:
                    outer.requests += 1
                    status, extra = outer.plan(outer.requests)
                    if 200 <= status < 300:
                        outer.received.append(Received(self.path, dict(self.headers), json.loads(body), time.time()))
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self._http = ThreadedHttp(Handler)
        self.url = self._http.url

    def close(self) -> None:
        self._http.close()

    def wait_for(self, count: int, timeout: float = 20) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.received) >= count, f"{len(self.received)} of {count} arrived ({self.requests} requests)"
        return self.received


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


class SmtpServer:
    """aiosmtpd on a fixed port, so it can be stopped (an outage) and started again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.inbox = _Inbox()
        self._controller: Controller | None = None

    def start(self) -> SmtpServer:
        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def messages(self) -> list[Message]:
        return self.inbox.messages

    def wait_for(self, count: int, timeout: float = 20) -> list[Message]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.messages) >= count, f"{len(self.messages)} of {count} emails arrived"
        return self.messages
