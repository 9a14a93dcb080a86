"""The CLI under interruption: a killed apply changes nothing; uninstall under load loses no row."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import psycopg


def installed(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    row = conn.execute("SELECT to_regnamespace('supabase_push') IS NOT NULL").fetchone()
    return bool(row and row[0])


def test_apply_killed_midway_leaves_the_database_as_before(db_url: str) -> None:
    with psycopg.connect(db_url) as blocker, psycopg.connect(db_url, autocommit=True) as observer:
        blocker.execute("LOCK TABLE public.trades IN ACCESS EXCLUSIVE MODE")  # apply waits here, mid-transaction
        apply = subprocess.Popen([sys.executable, "-m", "supabase_push", "apply", "--db-url", db_url],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # until apply has done part of its work and is waiting
            row = observer.execute("SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = "
                                   "'public.trades'::regclass").fetchone()
            if row and row[0]:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("apply never reached the locked table")
        apply.kill()
        apply.wait()
        blocker.rollback()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and observer.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'supabase-push' "
                "AND pid <> pg_backend_pid()").fetchone() != (0,):
            time.sleep(0.05)  # the server notices the dead client and rolls its transaction back
        assert not installed(observer)
        row = observer.execute("SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                               "WHERE c.relname IN ('trades', 'positions', 'portfolio_snapshots') "
                               "AND NOT t.tgisinternal").fetchone()
        assert row == (0,)


def test_uninstall_while_writers_run_loses_no_user_row(installed_url: str) -> None:
    committed = [0] * 4
    stop = threading.Event()
    failures: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            with psycopg.connect(installed_url, autocommit=True) as conn:
                while not stop.is_set():
                    conn.execute("INSERT INTO trades (symbol, side, quantity, price) VALUES (%s, 'buy', 1, 1)",
                                 (f"U{n}",))
                    committed[n] += 1
        except BaseException as exc:  # a writer that fails is a lost row
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    done = subprocess.run([sys.executable, "-m", "supabase_push", "uninstall", "--yes", "--db-url", installed_url],
                          capture_output=True, text=True, timeout=60, check=False)
    time.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join()
    assert done.returncode == 0, done.stderr
    assert not failures, failures
    with psycopg.connect(installed_url) as conn:
        assert not installed(conn)
        row = conn.execute("SELECT count(*) FROM trades WHERE symbol LIKE 'U%'").fetchone()
    assert row == (sum(committed),) and sum(committed) > 0
