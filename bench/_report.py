"""What a benchmark section reports, and how `python -m bench` writes BENCHMARKS.md and the plots."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path


@dataclass
class Ratio:
    label: str
    value: float
    target: str | None = None
    """e.g. ``<= 1.5x``; checked against ``value``."""

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        op, number = self.target.split()
        limit = float(number.rstrip("x"))
        return self.value <= limit if op == "<=" else self.value >= limit


@dataclass
class Section:
    key: str
    title: str
    what: str
    unit: str
    columns: list[str]
    rows: dict[str, list[float | None]] = field(default_factory=dict)
    """Row name -> one value per column (medians over the runs)."""
    ratios: list[Ratio] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    runs: int = 1
    log_scale: bool = False
    plotted: list[str] | None = None
    """The columns the plot shows (those in ``unit``); default all."""

    def add(self, name: str, values: list[float | None]) -> None:
        self.rows[name] = values

    def value(self, row: str, column: str) -> float:
        found = self.rows[row][self.columns.index(column)]
        assert found is not None, (row, column)
        return found


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in ("supabase-push", "realtime", "postgrest", "psycopg", "websockets", "broadcaster", "asyncpg"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def _cell(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:,.2f}"


def markdown(sections: list[Section], *, postgres: int, quick: bool, plots: dict[str, str]) -> str:
    info = versions()
    lines = [
        "# Benchmarks",
        "",
        "Written by `python -m bench`" + (" --quick (a smoke run: few samples, not for decisions)" if quick else "")
        + f" on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. One machine, one run: ours and each peer measured",
        "in the same run, medians over repeated runs. These machines are noisy: read the ratios.",
        "",
        f"Machine: {os.cpu_count()} cores, {platform.system()} {platform.machine()}, PostgreSQL {postgres}, loopback.",
        "Versions: " + ", ".join(f"{name} {version}" for name, version in info.items()) + ".",
        "",
    ]
    verdicts = [(s.title, r) for s in sections for r in s.ratios if r.met is not None]
    if verdicts:
        lines += ["## Targets", "", "| section | ratio | value | target | met |", "|---|---|---|---|---|"]
        lines += [f"| {title} | {r.label} | {r.value:.2f}x | {r.target} | {'yes' if r.met else '**no**'} |"
                  for title, r in verdicts]
        lines.append("")
        missed = [f"{r.label} ({title})" for title, r in verdicts if not r.met]
        if missed:
            lines += ["Where we miss a target: " + "; ".join(missed) + ". Each section's notes say why.", ""]
    for section in sections:
        lines += [f"## {section.title}", "", section.what, "",
                  f"Runs: {section.runs}; unit: {section.unit}.", "",
                  "| | " + " | ".join(section.columns) + " |",
                  "|---|" + "---|" * len(section.columns)]
        lines += [f"| {name} | " + " | ".join(_cell(v) for v in values) + " |" for name, values in section.rows.items()]
        lines.append("")
        if section.ratios:
            lines += [f"- {r.label}: **{r.value:.2f}x**" + (f" (target {r.target}: {'met' if r.met else 'not met'})"
                                                            if r.target else "") for r in section.ratios]
            lines.append("")
        lines += [f"{note}" for note in section.notes]
        if section.notes:
            lines.append("")
        if section.key in plots:
            lines += [f"![{section.title}]({plots[section.key]})", ""]
    return "\n".join(lines)


def plot(section: Section, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(section.rows)
    columns = section.plotted or section.columns
    width = 0.8 / max(1, len(columns))
    figure, axes = plt.subplots(figsize=(10, 0.5 * len(names) + 2))
    for i, column in enumerate(columns):
        values = [section.rows[name][section.columns.index(column)] or 0.0 for name in names]
        axes.barh([n + i * width for n in range(len(names))], values, height=width, label=column)
    axes.set_yticks([n + width * (len(columns) - 1) / 2 for n in range(len(names))], names)
    axes.invert_yaxis()
    axes.set_xlabel(section.unit)
    if section.log_scale:
        axes.set_xscale("log")
    axes.set_title(section.title)
    if len(columns) > 1:
        axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def print_section(result: Section) -> None:
    print(f"{result.title}: {result.what}", flush=True)
    for name, values in result.rows.items():
        print(f"  {name:<44} " + "   ".join(f"{c} {_cell(v):>9}" for c, v in zip(result.columns, values, strict=True)))
    for ratio in result.ratios:
        verdict = "" if ratio.met is None else ("  (target met)" if ratio.met else f"  (target {ratio.target} NOT met)")
        print(f"  {ratio.label:<44} {ratio.value:8.2f}x{verdict}", flush=True)
