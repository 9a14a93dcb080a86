"""The SQL users paste is the SQL the wheel ships."""

from __future__ import annotations

import subprocess
import sys
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
