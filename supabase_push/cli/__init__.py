"""The ``supabase-push`` command line: thin commands over the library, one module per group.

Exit codes: 0 success; 1 the operation failed or ``verify`` found a problem;
2 bad usage or configuration (no database URL, malformed route, a payload that is not a JSON object,
credentials the server refused).
"""

from __future__ import annotations

# Each module adds its commands to the app as it is imported: this order is the order --help lists them in.
# isort: off
from . import database  # noqa: F401 (apply, verify, uninstall, status, prune, stamp)
from . import sandbox  # noqa: F401 (demo, serve)
from . import diagnose  # noqa: F401 (doctor)
from . import consumers  # noqa: F401 (tail, relay, forward)
from . import send  # noqa: F401 (broadcast, publish)
# isort: on
from ._app import app, main

__all__ = ["app", "main"]
