"""ruff and mypy are part of the test command, so CI holds the code to them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _tool(name: str) -> list[str]:
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", name]


def test_ruff() -> None:
    done = subprocess.run([*_tool("ruff"), "check", "."], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("target", [[], ["bench"], ["examples"]], ids=["package+tests", "bench", "examples"])
def test_mypy(target: list[str]) -> None:
    done = subprocess.run([*_tool("mypy"), *target], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


# Where a wait_for runs in the caller's own flow, never in a task something else cancels: the sync twins'
# portal, the demo's and the CLI's own loops.
WAIT_FOR_ALLOWED = {"sync.py", "demo/run.py", "demo/market.py", "cli/database.py", "broadcast/memory.py"}


def test_no_wait_for_in_tasks_that_get_cancelled() -> None:
    """Python 3.11's asyncio.wait_for can swallow a cancellation that arrives as its inner call ends: a
    Realtime transport's clean-up did so, and Subscriber.close() waited for ever on a transport that went
    on reconnecting. Library code uses asyncio.timeout."""
    package = ROOT / "supabase_push"
    found = sorted(str(path.relative_to(package)) for path in package.rglob("*.py")
                   if "asyncio.wait_for(" in path.read_text())
    assert set(found) <= WAIT_FOR_ALLOWED, found
