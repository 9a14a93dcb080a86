"""Names a package exports, imported from their modules on first use (PEP 562).

``import supabase_push`` then costs what the package needs to exist, not every backend and client
behind it: the official Realtime client, httpx and psycopg are imported by the parts that use them.
A package lists its names once, module by module, and imports the same names under
``TYPE_CHECKING`` for type checkers (``tests/test_packaging.py`` holds the two lists equal).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["exports"]


def exports(package: str, modules: Mapping[str, Sequence[str]]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: ``modules`` maps a module (relative, ``".events"``)
    to the names it gives the package."""
    where = {name: module for module, names in modules.items() for name in names}
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value  # the next lookup is a plain attribute
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *where})

    return __getattr__, __dir__
