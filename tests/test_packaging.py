"""The SQL users paste is the SQL the wheel ships; the package imports what a caller uses, no more."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

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


LAZY_PACKAGES = ["supabase_push", "supabase_push.broadcast", "supabase_push.subscribe"]


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_a_package_exports_each_name_once_lazily_and_for_type_checkers_alike(package: str) -> None:
    """What ``__all__`` lists, the lazy table and the TYPE_CHECKING imports name the same things, and each
    name is the object its module defines."""
    module = importlib.import_module(package)
    source = Path(module.__file__ or "").read_text()
    tree = ast.parse(source)
    checked: set[str] = set()
    bound: set[str] = set()
    lazy: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            checked |= {alias.asname or alias.name for stmt in node.body if isinstance(stmt, ast.ImportFrom)
                        for alias in stmt.names}
        elif isinstance(node, ast.ImportFrom) and node.module not in ("__future__", "typing", "_lazy"):
            bound |= {alias.asname or alias.name for alias in node.names}
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) \
                and ast.unparse(node.value.func) == "exports":
            table = ast.literal_eval(node.value.args[1])
            lazy = {name: where for where, names in table.items() for name in names}
    assert lazy, f"{package} has no lazy table"
    assert checked == set(lazy), "the TYPE_CHECKING imports and the lazy table differ"
    assert set(module.__all__) == set(lazy) | bound - {"exports"} | ({"__version__"} & set(module.__all__))
    for name, where in lazy.items():
        defined = importlib.import_module(where, package)
        assert getattr(module, name) is getattr(defined, name), name
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        module.nothing_here  # noqa: B018
    assert set(lazy) <= set(dir(module))


def _imported_after(code: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", f"import sys\n{code}\nprint(' '.join(sys.modules))"],
                          capture_output=True, text=True, timeout=60, check=True)
    return set(done.stdout.split())


HEAVY = {"realtime", "httpx", "psycopg", "pydantic", "websockets"}


@pytest.mark.parametrize(("code", "brings"), [
    ("import supabase_push", set()),
    ("from supabase_push import SupabasePushError, broadcast", set()),
    ("from supabase_push import Broadcaster", {"pydantic"}),
    ("from supabase_push import Subscriber", {"pydantic", "psycopg", "httpx"}),
    ("from supabase_push.broadcast import backend_from_settings\n"
     "from supabase_push.config import Settings\n"
     "backend_from_settings(Settings(database_url='postgresql://x@localhost/db'))", {"pydantic", "psycopg"}),
    ("import supabase_push.cli", set()),
])
def test_importing_a_part_imports_only_the_clients_it_uses(code: str, brings: set[str]) -> None:
    """``import supabase_push`` and ``supabase-push --help`` import no client or driver; a broadcaster or a
    subscriber imports the official Realtime client only when it talks to Realtime."""
    assert _imported_after(code) & HEAVY == brings


def test_the_realtime_transport_and_backend_are_built_by_their_factories_on_demand() -> None:
    code = ("from supabase_push.config import Settings\n"
            "from supabase_push.subscribe import transport_from_settings\n"
            "transport_from_settings(Settings(supabase_url='http://127.0.0.1:1', service_role_key='k'))")
    assert "realtime" in _imported_after(code)
