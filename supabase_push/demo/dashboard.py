"""The demo's live terminal view: positions with P&L, the latest trades, the portfolio, and per
transport its state, events/s and commit-to-screen latency."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .watch import Book, Watch

__all__ = ["render"]


def _money(value: Any, signed: bool = False) -> Text:
    number = float(value or 0)
    text = f"{number:+,.2f}" if signed else f"{number:,.2f}"
    return Text(text, style=("green" if number >= 0 else "red") if signed else "")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def render(book: Book, watches: list[Watch], *, elapsed: float, footer: str) -> RenderableType:
    positions = Table(title="Positions", expand=True, title_justify="left")
    for column in ("symbol", "qty", "avg", "price", "value", "unrealized", "realized"):
        positions.add_column(column, justify="left" if column == "symbol" else "right")
    for row in sorted(book.positions.values(), key=lambda r: str(r.get("symbol"))):
        positions.add_row(str(row.get("symbol")), f"{float(row.get('quantity') or 0):,.0f}",
                          _money(row.get("average_price")), _money(row.get("current_price")),
                          _money(row.get("market_value")), _money(row.get("unrealized_pnl"), signed=True),
                          _money(row.get("realized_pnl"), signed=True))

    trades = Table(title="Latest trades", expand=True, title_justify="left")
    for column in ("time", "symbol", "side", "qty", "price"):
        trades.add_column(column, justify="right" if column in ("qty", "price") else "left")
    for row in book.trades:
        side = str(row.get("side"))
        trades.add_row(str(row.get("executed_at", ""))[11:23], str(row.get("symbol")),
                       Text(side, style="green" if side == "buy" else "red"),
                       f"{float(row.get('quantity') or 0):,.0f}", _money(row.get("price")))

    transports = Table(title="Transports (each a Subscriber: every change once, in order)", expand=True,
                       title_justify="left")
    for column in ("transport", "state", "events", "events/s", "p50", "p99 (last 500)", "switches"):
        transports.add_column(column, justify="left" if column in ("transport", "state") else "right")
    for watch in watches:
        stats = watch.subscriber.stats
        transports.add_row(watch.name, stats.state, f"{len(watch.cursors):,}", f"{watch.per_second():,.0f}",
                           _ms(watch.percentile(0.5, 500)), _ms(watch.percentile(0.99, 500)), str(stats.switches))

    portfolio = book.portfolio or {}
    value = Text.assemble(("portfolio ", "bold"), (f"{float(portfolio.get('total_value') or 0):,.2f}", "bold"),
                          "   cash ", f"{float(portfolio.get('cash') or 0):,.2f}", "   P&L ",
                          _money(portfolio.get("total_pnl"), signed=True), f"   · {elapsed:.0f} s")
    return Group(Panel(value, title="supabase-push demo", subtitle=footer), positions, trades, transports)
