"""The ``supabase-push`` command line: thin commands over the library, one module per group.

Exit codes: 0 success; 1 the operation failed or ``verify`` found a problem;
2 bad usage or configuration (no database URL, malformed route, a payload that is not a JSON object,
credentials the server refused).
"""

from __future__ import annotations

# Each module adds its commands to the app as it is imported, in the order --help lists them.
from . import consumers, database, diagnose, sandbox, send  # noqa: F401
from ._app import app, main

__all__ = ["app", "main"]
