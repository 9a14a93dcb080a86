"""``python -m bench``: every benchmark, ours beside the peers, in one run; writes BENCHMARKS.md and plots.

    python -m bench                 # the full run (about 10 minutes on 2 cores)
    python -m bench --quick         # a smoke run, under two minutes (CI runs it, asserts nothing)
    python -m bench --only latency,trigger_cost --runs 5 --out /tmp/bench

Sections: latency, throughput, trigger_cost, fanout, relay, catch_up (with ingest), startup. Each prints
its figures and ratios as it finishes.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the scripts import their helpers as top-level modules

import broadcast_throughput  # noqa: E402
import catch_up  # noqa: E402
import fanout  # noqa: E402
import relay_fanout  # noqa: E402
import startup  # noqa: E402
import subscriber_latency  # noqa: E402
import trigger_cost  # noqa: E402
from _report import Section, markdown, plot, print_section  # noqa: E402
from _stack import Stack, stack  # noqa: E402


async def _one(run: Callable[..., Awaitable[Section]], env: Stack, quick: bool, runs: int) -> list[Section]:
    return [await run(env, quick=quick, runs=runs)]


SECTIONS: dict[str, Callable[[Stack, bool, int], Awaitable[list[Section]]]] = {
    "latency": lambda env, quick, runs: _one(subscriber_latency.section, env, quick, runs),
    "throughput": lambda env, quick, runs: _one(broadcast_throughput.section, env, quick, runs),
    "trigger_cost": lambda env, quick, runs: _one(trigger_cost.section, env, quick, runs),
    "fanout": lambda env, quick, runs: _one(fanout.section, env, quick, runs),
    "relay": lambda env, quick, runs: _one(relay_fanout.section, env, quick, runs),
    "catch_up": lambda env, quick, runs: catch_up.sections(env, quick=quick, runs=runs),
    "startup": lambda env, quick, runs: _one(startup.section, env, quick, runs),
}


async def run(only: list[str], quick: bool, runs: int, out: Path) -> None:
    started = time.perf_counter()
    results: list[Section] = []
    with stack() as env:
        postgres = env.pg.version
        for name in only:
            began = time.perf_counter()
            for result in await SECTIONS[name](env, quick, runs):
                print_section(result)
                results.append(result)
            print(f"  ({name}: {time.perf_counter() - began:.0f} s)\n", flush=True)
    plots_dir = out / "bench" / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    plots: dict[str, str] = {}
    for result in results:
        path = plots_dir / f"{result.key}.png"
        plot(result, path)
        plots[result.key] = str(path.relative_to(out))
    (out / "BENCHMARKS.md").write_text(markdown(results, postgres=postgres, quick=quick, plots=plots))
    print(f"wrote {out / 'BENCHMARKS.md'} and {len(plots)} plots in {plots_dir} "
          f"({time.perf_counter() - started:.0f} s in all)")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few samples, 1 run: a smoke run under two minutes")
    parser.add_argument("--runs", type=int, default=3, help="repetitions per figure (medians are reported)")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated: {', '.join(SECTIONS)}")
    parser.add_argument("--out", type=Path, default=HERE.parent, help="where BENCHMARKS.md and bench/plots go")
    args = parser.parse_args()
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in only if name not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    asyncio.run(run(only, args.quick, 1 if args.quick else args.runs, args.out))


if __name__ == "__main__":
    main()
