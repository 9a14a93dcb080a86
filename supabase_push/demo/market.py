"""A simulated trading backend: orders fill into trades, positions move with prices,
portfolio snapshots every few seconds. Every write is a real commit to Postgres; after
each fill the backend also announces it through the broadcast helpers, as a service would."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg

from ..broadcast import Broadcaster
from ..errors import BroadcastError

__all__ = ["ACCOUNT", "Market"]

log = logging.getLogger("supabase_push.demo")

ACCOUNT = "supabase-push-demo"
"""Every row the demo writes carries this account_id (``--supabase`` deletes them at the end)."""
START_PRICES = {"SPY": 601.25, "AAPL": 231.40, "NVDA": 141.10, "TSLA": 252.80, "QQQ": 512.35}
START_CASH = 100_000.0
MAX_POSITION_VALUE = 0.25 * START_CASH
"""A position limit per symbol, at cost (quantity x average price): the book stays diversified and the cash
positive. At the fill price instead, a position bought back after a fall could exceed it at cost."""
MAX_ORDER = 20


@dataclass
class Holding:
    position_id: int
    symbol: str
    quantity: int = 0
    average_price: float = 0.0
    price: float = 0.0
    realized: float = 0.0

    def values(self) -> dict[str, Any]:
        return {"quantity": self.quantity, "average_price": round(self.average_price, 4),
                "current_price": round(self.price, 2), "market_value": round(self.quantity * self.price, 2),
                "unrealized_pnl": round((self.price - self.average_price) * self.quantity, 2),
                "realized_pnl": round(self.realized, 2)}


class Market:
    def __init__(self, dsn: str, broadcaster: Broadcaster | None = None, *, fills_per_second: float = 15,
                 ticks_per_second: float = 20, snapshot_every: float = 2.0, seed: int | None = None) -> None:
        self.dsn = dsn
        self.broadcaster = broadcaster
        self.fills_per_second = fills_per_second
        self.ticks_per_second = ticks_per_second
        self.snapshot_every = snapshot_every
        self.rng = random.Random(seed)  # noqa: S311 (simulated prices, not secrets)
        self.holdings: dict[str, Holding] = {}
        self.cash = START_CASH
        self.announced = 0
        """Service broadcasts (``trade_executed``) accepted by the server."""
        self.announce_failures = 0

    async def open_book(self) -> None:
        """One position per symbol for the demo account (reused if a previous run left them)."""
        async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn, conn.transaction():
            for symbol, price in START_PRICES.items():
                cur = await conn.execute("SELECT id FROM positions WHERE account_id = %s AND symbol = %s",
                                         (ACCOUNT, symbol))
                row = await cur.fetchone()
                if row is None:
                    cur = await conn.execute(
                        "INSERT INTO positions (account_id, symbol, current_price) VALUES (%s, %s, %s) RETURNING id",
                        (ACCOUNT, symbol, price))
                    row = await cur.fetchone()
                assert row is not None
                holding = Holding(int(row[0]), symbol, price=price)
                self.holdings[symbol] = holding
                await self._save(conn, holding)

    async def run(self, stop: asyncio.Event) -> None:
        """Trade until ``stop`` is set."""
        async def every(interval: float, step: Any) -> None:
            async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
                while not stop.is_set():
                    await step(conn)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self.rng.uniform(0.5, 1.5) * interval)

        await asyncio.gather(every(1 / self.fills_per_second, self._fill),
                             every(1 / self.ticks_per_second, self._tick),
                             every(self.snapshot_every, self._snapshot))

    def _order(self, holding: Holding, price: float) -> tuple[str, int] | None:
        """A side and a quantity the account can take: buys within cash (buying power) and the
        position limit, sells within what it holds; None when neither is possible."""
        room = min(self.cash, MAX_POSITION_VALUE - holding.quantity * holding.average_price)
        can_buy = min(MAX_ORDER, int(room // price)) if room > 0 else 0
        can_sell = min(MAX_ORDER, holding.quantity)
        if can_sell and (not can_buy or self.rng.random() < 0.45):
            return "sell", self.rng.randint(1, can_sell)
        if can_buy:
            return "buy", self.rng.randint(1, can_buy)
        return None

    async def _fill(self, conn: psycopg.AsyncConnection[Any]) -> None:
        holding = self.holdings[self.rng.choice(list(self.holdings))]
        price = round(holding.price * (1 + self.rng.gauss(0, 0.0005)), 2)
        order = self._order(holding, price)
        if order is None:
            return
        side, quantity = order
        if side == "buy":
            total = holding.quantity + quantity
            holding.average_price = (holding.average_price * holding.quantity + price * quantity) / total
            holding.quantity = total
            self.cash -= price * quantity
        else:
            holding.realized += (price - holding.average_price) * quantity
            holding.quantity -= quantity
            self.cash += price * quantity
        holding.price = price
        order_id = f"ord-{uuid.uuid4().hex[:10]}"
        async with conn.transaction():
            cur = await conn.execute(
                "INSERT INTO trades (account_id, position_id, symbol, side, quantity, price, order_id) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (ACCOUNT, holding.position_id, holding.symbol, side, quantity, price, order_id))
            row = await cur.fetchone()
            await self._save(conn, holding)
        if self.broadcaster is not None and row is not None:
            try:
                await self.broadcaster.broadcast_trade_executed(int(row[0]), {
                    "symbol": holding.symbol, "side": side, "quantity": quantity, "price": price,
                    "order_id": order_id})
                self.announced += 1
            except BroadcastError as exc:
                self.announce_failures += 1
                log.warning("could not announce trade %s: %s", row[0], exc)

    async def _tick(self, conn: psycopg.AsyncConnection[Any]) -> None:
        holding = self.holdings[self.rng.choice(list(self.holdings))]
        holding.price = round(max(0.01, holding.price * (1 + self.rng.gauss(0, 0.001))), 2)
        await self._save(conn, holding)

    async def _snapshot(self, conn: psycopg.AsyncConnection[Any]) -> None:
        positions_value = sum(h.quantity * h.price for h in self.holdings.values())
        pnl = sum((h.price - h.average_price) * h.quantity + h.realized for h in self.holdings.values())
        await conn.execute(
            "INSERT INTO portfolio_snapshots (account_id, total_value, cash, positions_value, total_pnl) "
            "VALUES (%s, %s, %s, %s, %s)",
            (ACCOUNT, round(self.cash + positions_value, 2), round(self.cash, 2), round(positions_value, 2),
             round(pnl, 2)))

    @staticmethod
    async def _save(conn: psycopg.AsyncConnection[Any], holding: Holding) -> None:
        values = holding.values()
        await conn.execute(
            "UPDATE positions SET quantity = %(quantity)s, average_price = %(average_price)s, "
            "current_price = %(current_price)s, market_value = %(market_value)s, "
            "unrealized_pnl = %(unrealized_pnl)s, realized_pnl = %(realized_pnl)s, updated_at = now() "
            "WHERE id = %(id)s", {**values, "id": holding.position_id})
