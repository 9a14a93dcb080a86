"""For code without asyncio (a cron job, Django, Flask): send and receive with plain calls.

    DATABASE_URL=... python examples/sync_script.py
"""

from __future__ import annotations

import argparse

from supabase_push.sync import SyncSubscriber, broadcast_position_update, close_default_broadcaster


def main(count: int) -> None:
    # A service-side message (NOTIFY on plain Postgres, REST on Supabase): returns once accepted.
    broadcast_position_update(position_id=1, position_data={"symbol": "SPY", "current_price": 601.25})
    with SyncSubscriber.from_env(topics=["position-updates"], cursor_store="sync.cursor") as sub:
        for _ in range(count):
            event = sub.get(timeout=30)
            if event is None:
                print("nothing new for 30 s")
                break
            position = event.record or {}
            print(f"{event.op} {position.get('symbol')}: {position.get('quantity')} @ {position.get('current_price')}")
    close_default_broadcaster()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=10, help="how many position changes to print")
    main(parser.parse_args().count)
