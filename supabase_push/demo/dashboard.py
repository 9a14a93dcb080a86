"""The demo's live terminal view: positions with P&L, the latest trades, the portfolio, and per
transport its state, events/s and commit-to-screen latency."""

from __future__ import annotations

from typing import Any

from rich import box
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
    return "-" if value is None else f"{value:.1f}"


def _table(title: str) -> Table:
    """Compact enough for 80x24: a title, a header, a rule, the rows."""
    return Table(title=title, expand=True, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
                 padding=(0, 1), pad_edge=False)


def render(book: Book, watches: list[Watch], *, elapsed: float, footer: str, height: int = 40) -> RenderableType:
    """The whole view in ``height`` lines (80 columns are enough): the transports first, since they are
    the point, then the positions, then as many of the latest trades as fit."""
    transports = _table("Transports: each a Subscriber, every change once, in order")
    for column in ("transport", "state", "events", "/s", "p50 ms", "p99 ms", "lost", "dup", "switch"):
        transports.add_column(column, justify="left" if column in ("transport", "state") else "right",
                              no_wrap=True)
    for watch in watches:
        stats = watch.subscriber.stats
        lost, duplicates = watch.lost, watch.duplicates
        transports.add_row(watch.name, stats.state, f"{len(watch.cursors):,}", f"{watch.per_second():,.0f}",
                           _ms(watch.percentile(0.5, 500)), _ms(watch.percentile(0.99, 500)),
                           Text(str(lost), style="red" if lost else "green"),
                           Text(str(duplicates), style="red" if duplicates else "green"), str(stats.switches))

    positions = _table("Positions")
    for column in ("symbol", "qty", "avg", "price", "value", "unrealized", "realized"):
        positions.add_column(column, justify="left" if column == "symbol" else "right", no_wrap=True)
    rows = sorted(book.positions.values(), key=lambda r: str(r.get("symbol")))
    for row in rows:
        positions.add_row(str(row.get("symbol")), f"{float(row.get('quantity') or 0):,.0f}",
                          _money(row.get("average_price")), _money(row.get("current_price")),
                          _money(row.get("market_value")), _money(row.get("unrealized_pnl"), signed=True),
                          _money(row.get("realized_pnl"), signed=True))

    # Lines: the panel 3, each table 3 (title, header, rule) and its rows, one spare for the cursor.
    room = height - 3 - (3 + len(watches)) - (3 + len(rows)) - 3 - 1
    parts: list[RenderableType] = [_header(book, elapsed, footer), transports, positions]
    if room > 0:
        trades = _table("Latest trades")
        for column in ("time", "symbol", "side", "qty", "price"):
            trades.add_column(column, justify="right" if column in ("qty", "price") else "left", no_wrap=True)
        for row in list(book.trades)[:room]:
            side = str(row.get("side"))
            trades.add_row(str(row.get("executed_at", ""))[11:23], str(row.get("symbol")),
                           Text(side, style="green" if side == "buy" else "red"),
                           f"{float(row.get('quantity') or 0):,.0f}", _money(row.get("price")))
        parts.append(trades)
    return Group(*parts)


def _header(book: Book, elapsed: float, footer: str) -> Panel:
    portfolio = book.portfolio or {}
    value = Text.assemble(("portfolio ", "bold"), (f"{float(portfolio.get('total_value') or 0):,.2f}", "bold"),
                          "  cash ", f"{float(portfolio.get('cash') or 0):,.2f}", "  P&L ",
                          _money(portfolio.get("total_pnl"), signed=True), f"  · {elapsed:.0f} s")
    return Panel(value, title="supabase-push demo", subtitle=footer)
