"""Where a subscriber keeps its cursor between runs, so a restarted script resumes where it stopped."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from ..errors import ConfigError
from ..events import Cursor

__all__ = ["CursorStore", "FileCursorStore"]


class CursorStore(Protocol):
    """Load and save the cursor of the last event your code has finished with."""

    def load(self) -> Cursor | None: ...

    def save(self, cursor: Cursor) -> None: ...


class FileCursorStore:
    """The cursor in a small text file, replaced atomically on every save."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._tmp = self.path.with_name(self.path.name + ".tmp")

    def load(self) -> Cursor | None:
        try:
            text = self.path.read_text().strip()
        except FileNotFoundError:
            return None
        try:
            return Cursor.parse(text)
        except ValueError:
            raise ConfigError(f"{self.path} does not hold a cursor: {text[:40]!r}",
                              hint="delete it to start from the beginning of the change log") from None

    def save(self, cursor: Cursor) -> None:
        self._tmp.write_text(str(cursor))
        os.replace(self._tmp, self.path)
