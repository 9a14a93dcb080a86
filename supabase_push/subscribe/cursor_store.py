"""Where a subscriber keeps its cursor between runs, so a restarted script resumes where it stopped."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import IO, Protocol

from ..errors import ConfigError, SupabasePushError
from ..events import Cursor

__all__ = ["CursorStore", "FileCursorStore"]


class CursorStore(Protocol):
    """Load and save the cursor of the last event your code has finished with.

    A store may also have ``claim()`` (the subscriber calls it at start: refuse a second
    owner there) and ``close()`` (called when the subscriber closes)."""

    def load(self) -> Cursor | None: ...

    def save(self, cursor: Cursor) -> None: ...


class FileCursorStore:
    """The cursor in a small text file, replaced atomically on every save.

    One owner at a time: the first save (or :meth:`claim`) takes an exclusive lock on
    ``<file>.lock``, held until :meth:`close` or the process ends, so a second subscriber
    on the same file is refused instead of overwriting the first one's position."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self._lock: IO[str] | None = None

    def load(self) -> Cursor | None:
        try:
            text = self.path.read_text().strip()
        except FileNotFoundError:
            return None
        try:
            return Cursor.parse(text)
        except ValueError as exc:
            raise ConfigError(f"{self.path} does not hold a usable cursor: {exc}",
                              hint="delete it to start from the beginning of the change log") from None

    def claim(self) -> None:
        if self._lock is not None:
            return
        try:
            lock = open(self.path.with_name(self.path.name + ".lock"), "a+")  # noqa: SIM115 (held until close)
        except OSError as exc:
            raise _unusable(self.path, exc) from None
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise ConfigError(f"the cursor file {self.path} is in use by another subscriber",
                              hint="give each subscriber a cursor file of its own") from None
        self._lock = lock

    def save(self, cursor: Cursor) -> None:
        self.claim()
        try:
            with open(os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
                f.write(str(cursor))
            os.replace(self._tmp, self.path)
        except OSError as exc:
            raise _unusable(self.path, exc) from None

    def close(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            with contextlib.suppress(OSError):
                lock.close()  # closing the file releases the lock

    def __del__(self) -> None:  # a store dropped without close() still lets go of its lock, quietly
        self.close()


def _unusable(path: Path, exc: OSError) -> SupabasePushError:
    return SupabasePushError(f"cannot save the cursor to {path}: {exc.strerror or exc}",
                             hint="check that the directory exists, is writable and has room")
