"""Keep the portfolio's value from the stream alone: no query per change, nothing missed.

    DATABASE_URL=... python examples/portfolio_aggregator.py

Market value per position, kept up to date from position changes, summed per account.
It starts from the beginning of the change log (or from its saved cursor), so its state is
exactly what the tables say, even after it was down.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from collections import defaultdict
from decimal import Decimal

from supabase_push import ChangeEvent, Subscriber


class Portfolio:
    def __init__(self) -> None:
        self.market_value: dict[int, tuple[str, Decimal]] = {}  # position id -> (account, value)

    def apply(self, event: ChangeEvent) -> None:
        if event.op == "DELETE" and event.old_record:
            self.market_value.pop(event.old_record["id"], None)
        elif event.record:
            row = event.record
            value = Decimal(str(row.get("quantity") or 0)) * Decimal(str(row.get("current_price") or 0))
            self.market_value[row["id"]] = (row["account_id"], value)

    def totals(self) -> dict[str, str]:
        by_account: defaultdict[str, Decimal] = defaultdict(Decimal)
        for account, value in self.market_value.values():
            by_account[account] += value
        return {account: f"{total:.2f}" for account, total in sorted(by_account.items())}


async def main(until_quiet: float | None) -> None:
    portfolio = Portfolio()
    async with Subscriber.from_env(topics=["position-updates"]) as sub:
        while True:
            try:
                event = await asyncio.wait_for(anext(sub), until_quiet)
            except TimeoutError:
                break  # quiet for a while: print the state and stop (for scripts and tests)
            portfolio.apply(event)
            print(json.dumps({"cursor": str(event.cursor), "totals": portfolio.totals()}), flush=True)
    print(json.dumps({"final": portfolio.totals()}), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--until-quiet", type=float, help="stop after this many seconds without a change")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(parser.parse_args().until_quiet))
