"""The benchmark report's pure logic: target verdicts and the markdown it writes."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from _report import Ratio, Section, markdown


def test_targets_are_judged_both_ways() -> None:
    assert Ratio("a", 1.2, "<= 1.5x").met is True
    assert Ratio("a", 1.6, "<= 1.5x").met is False
    assert Ratio("a", 0.4, ">= 0.5x").met is False
    assert Ratio("a", 12, ">= 10x").met is True
    assert Ratio("a", 3.0).met is None


def test_markdown_lists_figures_and_missed_targets() -> None:
    section = Section("latency", "Latency", "What it measures.", "ms", ["p50", "p99"], runs=3)
    section.add("ours", [1.25, 2.5])
    section.add("peer", [1.0, None])
    section.ratios += [Ratio("ours / peer", 1.25, "<= 1.5x"), Ratio("ours / 1 ms", 1.25, "<= 1x")]
    text = markdown([section], postgres=15, quick=True, plots={"latency": "bench/plots/latency.png"})
    assert "| ours | 1.25 | 2.50 |" in text and "| peer | 1.00 | - |" in text
    assert "| Latency | ours / 1 ms | 1.25x | <= 1x | **no** |" in text
    assert "Where we miss a target: ours / 1 ms (Latency)" in text
    assert "![Latency](bench/plots/latency.png)" in text and "--quick" in text and "Runs: 3" in text
