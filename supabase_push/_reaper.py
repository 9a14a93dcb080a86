"""Stops a throwaway cluster once the process that started it is gone.

Started by :class:`supabase_push.embedded.LocalPostgres` with a pipe on stdin. The
parent never writes to it: end-of-file means the parent closed it (a normal stop) or
died (any way at all, ``kill -9`` included). Either way: stop the server, delete the files.

Usage: python -m supabase_push._reaper PG_CTL DATA_DIR ROOT_DIR [USER]
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from .embedded import _kill_postmaster


def main(argv: list[str]) -> int:
    pg_ctl, data, root = argv[0], Path(argv[1]), Path(argv[2])
    user = argv[3] if len(argv) > 3 and argv[3] else None
    # A Ctrl-C meant for the parent reaches us too (same terminal): finish the job anyway.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        while sys.stdin.buffer.read(4096):
            pass
    if (data / "postmaster.pid").exists():
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run(
                [pg_ctl, "-D", str(data), "-m", "fast", "-w", "-t", "20", "stop"],
                user=user, capture_output=True, timeout=30, check=False,
            )
        _kill_postmaster(data)
    shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
