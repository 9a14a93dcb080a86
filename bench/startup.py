"""Start-up: what `import supabase_push` and `supabase-push --help` cost, beside the interpreter alone and
the import of one HTTP client (httpx), each a fresh process.

    python bench/startup.py [--runs 5] [--quick]      (all sections: python -m bench)

Issue 21's goal: at most 0.3 s for both.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from _report import Ratio, Section, median
from _stack import Stack, run_alone

SCRIPT = Path(sys.executable).with_name("supabase-push")
GOAL_SECONDS = 0.3

WAYS: dict[str, list[str]] = {
    "peer: the interpreter alone (python -c pass)": [sys.executable, "-c", "pass"],
    "peer: import httpx": [sys.executable, "-c", "import httpx"],
    "ours: import supabase_push": [sys.executable, "-c", "import supabase_push"],
    "ours: from supabase_push import Subscriber": [sys.executable, "-c", "from supabase_push import Subscriber"],
    "ours: supabase-push --help": [str(SCRIPT) if SCRIPT.exists() else sys.executable,
                                   *([] if SCRIPT.exists() else ["-m", "supabase_push"]), "--help"],
}


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    return time.perf_counter() - started


async def section(env: Stack, *, quick: bool, runs: int) -> Section:
    rounds = max(3, runs * (1 if quick else 3))
    times: dict[str, list[float]] = {name: [] for name in WAYS}
    for command in WAYS.values():
        timed(command)  # a warm disk cache for every row alike
    for _ in range(rounds):
        for name, command in WAYS.items():
            times[name].append(timed(command))
    result = Section("startup", "Start-up: a fresh process importing the package, or asking the CLI for help",
                     f"Wall time of a new process, median of {rounds}, interleaved.", "seconds", ["seconds"],
                     runs=rounds)
    for name in WAYS:
        result.add(name, [median(times[name])])
    alone = result.value("peer: the interpreter alone (python -c pass)", "seconds")
    httpx = result.value("peer: import httpx", "seconds")
    for name in ("ours: import supabase_push", "ours: supabase-push --help"):
        seconds = result.value(name, "seconds")
        result.ratios.append(Ratio(f"{name.removeprefix('ours: ')} / import httpx (time)", seconds / httpx))
        result.notes.append(f"{name.removeprefix('ours: ')}: {seconds:.3f} s, {seconds - alone:.3f} s over the "
                            f"interpreter's start; goal <= {GOAL_SECONDS} s: "
                            + ("met" if seconds <= GOAL_SECONDS else "NOT met"))
    return result


if __name__ == "__main__":
    run_alone(section, __doc__, "3 rounds")
