"""The SQL users paste is the SQL the wheel ships."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_ships_the_sql_files(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    (wheel,) = tmp_path.glob("supabase_push-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert "supabase_push/py.typed" in names
        for sql_file in sorted((ROOT / "sql").glob("*.sql")):
            packaged = archive.read(f"supabase_push/sql/{sql_file.name}").decode()
            assert packaged == sql_file.read_text()


def test_the_realtime_client_is_used_in_one_module_and_bounded() -> None:
    """The Python client's next major release rewrites its API: one adapter to change, and a bound
    that keeps users on the API it speaks until then."""
    importers = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "supabase_push").rglob("*.py")
                       if re.search(r"^\s*(from realtime\b|import realtime\b)", path.read_text(), re.MULTILINE))
    assert importers == ["supabase_push/_realtime_client.py"]
    requirements = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert [r for r in requirements if r.startswith("realtime")] == ["realtime>=2.20,<3"]
