"""Child processes that must not outlive this one (PostgREST beside the local server and the demo)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable

__all__ = ["dies_with_parent"]

_PR_SET_PDEATHSIG = 1


def dies_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has Linux send the child SIGTERM when this process dies, ``kill -9``
    included (``prctl(PR_SET_PDEATHSIG)``; strictly, when the thread that starts the child ends: start it
    from a thread that lives as long as the child should); None elsewhere, where a child is only stopped
    by a clean exit. A server such as PostgREST otherwise retries its lost database forever, an orphan."""
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)

    def arm() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return arm
