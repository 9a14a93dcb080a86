"""Watch trades and positions: every change once, in order, resuming where it stopped.

    DATABASE_URL=...  python examples/subscriber.py            # LISTEN/NOTIFY
    SUPABASE_URL=... SUPABASE_SERVICE_ROLE_KEY=... python examples/subscriber.py   # Realtime

Ctrl-C to stop; run it again and it goes on after the last change it printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from supabase_push import ChangeEvent, Subscriber


def show(event: ChangeEvent) -> None:
    row = event.record or event.old_record or {}
    print(f"{event.cursor:>10} {event.source:<8} {event.op:<6} {event.table:<10} "
          f"{row.get('symbol', '')} {row.get('quantity', '')} @ {row.get('price') or row.get('current_price') or ''}",
          flush=True)


async def main(count: int | None) -> None:
    async with Subscriber.from_env(topics=["trade-updates", "position-updates"],
                                   cursor_store="subscriber.cursor") as sub:
        seen = 0
        async for event in sub:
            show(event)
            seen += 1
            if count is not None and seen >= count:
                break
        print(f"stats: {sub.stats.as_dict()}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, help="stop after this many events")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(parser.parse_args().count))
