"""The throwaway cluster: it starts, and it never outlives its owner, even after kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psycopg

from supabase_push.embedded import LocalPostgres, find_postgres_bin

OWNER = textwrap.dedent("""
    import sys, time
    from supabase_push.embedded import LocalPostgres
    pg = LocalPostgres().start()
    print(pg.dsn, pg._cluster.root, flush=True)
    time.sleep(600)
""")


def _gone(path: Path, pid: int, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = True
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            alive = False
        if not path.exists() and not alive:
            return True
        time.sleep(0.1)
    return False


def test_start_query_stop() -> None:
    with LocalPostgres() as pg:
        root = pg._cluster.root if pg._cluster else None
        with psycopg.connect(pg.dsn) as conn:
            assert conn.execute("SHOW wal_level").fetchone() == ("logical",)
            assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)
            assert conn.execute("SHOW fsync").fetchone() == ("off",)
    assert root is not None and not root.exists()


def test_killed_owner_leaves_nothing_behind() -> None:
    owner = subprocess.Popen([sys.executable, "-c", OWNER], stdout=subprocess.PIPE, text=True)
    assert owner.stdout is not None
    dsn, root = owner.stdout.readline().split()
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    postmaster = int((Path(root) / "data" / "postmaster.pid").read_text().splitlines()[0])
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    owner.stdout.close()
    assert _gone(Path(root), postmaster), "the cluster outlived its killed owner"


def test_binaries_are_found() -> None:
    bin_dir = find_postgres_bin()
    assert (bin_dir / "initdb").is_file() and (bin_dir / "postgres").is_file()


def test_embedded_wheel_runs_the_triggers() -> None:
    """The pip-only path (no system Postgres): the wheel's server, as root or not."""
    from supabase_push import schema
    from supabase_push.changelog import read_changes, stamp
    from supabase_push.embedded import wheel_bin_dirs

    bin_dir = next(d for d in wheel_bin_dirs() if (d / "initdb").is_file())
    with LocalPostgres(bin_dir=bin_dir) as pg, psycopg.connect(pg.dsn, autocommit=True) as conn:
        assert pg.version >= 16
        schema.apply(conn, create_tables=True)
        assert schema.verify(conn).ok
        conn.execute('LISTEN "trade-updates"')
        conn.execute("INSERT INTO trades (symbol, side, quantity, price) VALUES ('W', 'buy', 1, 1)")
        assert stamp(conn) == 1  # the stamper's round pushes it
        (note,) = list(conn.notifies(timeout=5, stop_after=1))
        assert str(read_changes(conn)[0].cursor) in note.payload
