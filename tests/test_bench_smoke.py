"""`python -m bench --quick` runs every section to the end and writes its report (it asserts nothing about speed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ["latency", "throughput", "trigger_cost", "fanout", "relay", "catch_up"]

pytestmark = pytest.mark.slow


def test_the_quick_benchmark_runs_every_section(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = (tmp_path / "BENCHMARKS.md").read_text()
    assert "--quick" in report
    for name in SECTIONS:
        assert f"({name}: " in result.stdout, f"section {name} did not run"
    plots = sorted(p.stem for p in (tmp_path / "bench" / "plots").glob("*.png"))
    assert len(plots) >= len(SECTIONS), plots
