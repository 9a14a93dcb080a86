"""What the typed broadcast helpers send: a position, a trade, a portfolio snapshot.

Field names follow the reference tables (sql/reference_tables.sql). Unknown fields are
kept, so a project with extra columns can send them; known fields are type-checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, TypeVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import PayloadError
from .events import DEFAULT_ROUTES

__all__ = [
    "PORTFOLIO_EVENT",
    "POSITION_EVENT",
    "TRADE_EVENT",
    "PortfolioUpdate",
    "PositionUpdate",
    "TradeExecuted",
    "portfolio_update",
    "position_update",
    "trade_executed",
]

POSITION_EVENT, TRADE_EVENT, PORTFOLIO_EVENT = "position_update", "trade_executed", "portfolio_update"


class _Payload(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    user_id: UUID | str | None = None
    account_id: str | None = None


class PositionUpdate(_Payload):
    """A position's new state; every field but ``id`` may be left out (a partial update)."""

    id: int | str
    symbol: str | None = None
    quantity: Decimal | None = None
    average_price: Decimal | None = None
    current_price: Decimal | None = None
    market_value: Decimal | None = None
    unrealized_pnl: Decimal | None = None
    realized_pnl: Decimal | None = None
    status: Literal["open", "closed"] | None = None
    updated_at: datetime | None = None


class TradeExecuted(_Payload):
    """An executed trade."""

    id: int | str
    symbol: str
    side: Literal["buy", "sell"]
    quantity: Decimal = Field(gt=0)
    price: Decimal = Field(ge=0)
    fees: Decimal | None = None
    position_id: int | str | None = None
    order_id: str | None = None
    executed_at: datetime | None = None


class PortfolioUpdate(_Payload):
    """A portfolio snapshot for one account."""

    account_id: str
    total_value: Decimal
    cash: Decimal | None = None
    positions_value: Decimal | None = None
    day_pnl: Decimal | None = None
    total_pnl: Decimal | None = None
    taken_at: datetime | None = None


M = TypeVar("M", bound=_Payload)


def position_update(position_id: int | str, position_data: Mapping[str, Any] | PositionUpdate
                    ) -> tuple[str, str, PositionUpdate]:
    """(topic, event, payload) of a position update."""
    return DEFAULT_ROUTES["public.positions"], POSITION_EVENT, _validate(PositionUpdate, position_data, "id",
                                                                         position_id)


def trade_executed(trade_id: int | str, trade_data: Mapping[str, Any] | TradeExecuted
                   ) -> tuple[str, str, TradeExecuted]:
    """(topic, event, payload) of an executed trade."""
    return DEFAULT_ROUTES["public.trades"], TRADE_EVENT, _validate(TradeExecuted, trade_data, "id", trade_id)


def portfolio_update(account_id: str, portfolio_data: Mapping[str, Any] | PortfolioUpdate
                     ) -> tuple[str, str, PortfolioUpdate]:
    """(topic, event, payload) of a portfolio snapshot."""
    return DEFAULT_ROUTES["public.portfolio_snapshots"], PORTFOLIO_EVENT, _validate(
        PortfolioUpdate, portfolio_data, "account_id", account_id)


def _validate(model: type[M], data: Mapping[str, Any] | M, key: str, value: object) -> M:
    fields = data.model_dump(exclude_none=True) if isinstance(data, BaseModel) else data
    if not isinstance(fields, Mapping):
        raise PayloadError(f"{model.__name__} data must be a dict, got {type(fields).__name__}")
    given = fields.get(key)
    if given is not None and str(given) != str(value):
        raise PayloadError(f"{model.__name__}: {key}={value!r} disagrees with the data's {key}={given!r}")
    try:
        return model.model_validate({**fields, key: value})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'data'}: {e['msg']}" for e in exc.errors())
        raise PayloadError(f"invalid {model.__name__}: {problems}") from None
