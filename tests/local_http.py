"""A stdlib HTTP server on a free port in a thread, for the far ends tests need (JWKS, pages, sinks)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class QuietHandler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class ThreadedHttp:
    """``with ThreadedHttp(Handler) as server: server.url``"""

    def __init__(self, handler: Any) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> ThreadedHttp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
