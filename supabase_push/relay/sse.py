"""Server-Sent Events on the wire, without I/O: encoding frames, and parsing a stream of them.

The relay writes with :func:`frame` and :func:`comment`; tests, the benchmark and Python
clients read with :class:`SseParser` (the browser's EventSource does the same job).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SseEvent", "SseParser", "comment", "frame", "retry"]


def frame(data: str, *, id: str | None = None, event: str | None = None) -> bytes:
    """One event. ``data`` may span lines; ``id`` becomes the browser's Last-Event-ID."""
    lines = []
    if event is not None:
        lines.append(f"event: {_one_line(event)}")
    if id is not None:
        lines.append(f"id: {_one_line(id)}")
    lines.extend(f"data: {line}" for line in data.splitlines() or [""])
    return ("\n".join(lines) + "\n\n").encode()


def comment(text: str = "") -> bytes:
    """A comment line: ignored by clients, it keeps proxies and idle timers from closing the stream."""
    return f": {_one_line(text)}\n\n".encode()


def retry(milliseconds: int) -> bytes:
    """How long a browser waits before it reconnects."""
    return f"retry: {milliseconds}\n\n".encode()


def _one_line(text: str) -> str:
    if "\n" in text or "\r" in text:
        raise ValueError(f"an SSE field cannot span lines: {text!r}")
    return text


@dataclass(frozen=True)
class SseEvent:
    data: str
    event: str = "message"
    id: str | None = None
    """The last id seen on the stream so far (the spec keeps it across events without one)."""


class SseParser:
    """Feed bytes as they arrive; get complete events back (the EventSource parsing rules)."""

    def __init__(self) -> None:
        self._buffer = ""
        self._data: list[str] = []
        self._event = ""
        self.last_id: str | None = None
        self.retry_ms: int | None = None
        self.comments = 0

    def feed(self, chunk: bytes | str) -> list[SseEvent]:
        self._buffer += chunk.decode() if isinstance(chunk, bytes) else chunk
        events: list[SseEvent] = []
        while True:
            line, sep, rest = self._buffer.partition("\n")
            if not sep:
                return events
            self._buffer = rest
            event = self._line(line.removesuffix("\r"))
            if event is not None:
                events.append(event)

    def _line(self, line: str) -> SseEvent | None:
        if not line:  # a blank line dispatches
            data, self._data = self._data, []
            event, self._event = self._event, ""
            if not data:
                return None
            return SseEvent(data="\n".join(data), event=event or "message", id=self.last_id)
        if line.startswith(":"):
            self.comments += 1
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self.last_id = value
        elif name == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return None
