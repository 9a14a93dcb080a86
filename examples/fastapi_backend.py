"""A trading backend that records fills and tells the world, in a few lines.

    DATABASE_URL=... SUPABASE_URL=... SUPABASE_SERVICE_ROLE_KEY=... python examples/fastapi_backend.py

POST /fills {"symbol": "SPY", "side": "buy", "quantity": 2, "price": 601.25} writes the trade
(the trigger SQL pushes the row change to `trade-updates` and logs it for catch-up) and
announces it as a `trade_executed` broadcast from the service, through the broadcast helpers.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Literal

import psycopg
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel, Field

from supabase_push import Broadcaster


class Fill(BaseModel):
    symbol: str
    side: Literal["buy", "sell"]
    quantity: Decimal = Field(gt=0)
    price: Decimal = Field(ge=0)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with Broadcaster.from_env() as broadcaster, await psycopg.AsyncConnection.connect(
            os.environ["DATABASE_URL"], autocommit=True) as db:
        app.state.broadcaster, app.state.db = broadcaster, db
        yield


app = FastAPI(title="fills", lifespan=lifespan)


@app.post("/fills", status_code=201)
async def record_fill(fill: Fill) -> dict[str, object]:
    cur = await app.state.db.execute(
        "INSERT INTO trades (symbol, side, quantity, price) VALUES (%s, %s, %s, %s) RETURNING id",
        (fill.symbol, fill.side, fill.quantity, fill.price))
    row = await cur.fetchone()
    trade_id = row[0]
    await app.state.broadcaster.broadcast_trade_executed(trade_id, fill.model_dump())
    return {"id": trade_id, **fill.model_dump()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8000)
    uvicorn.run(app, host="127.0.0.1", port=parser.parse_args().port, log_level="warning")
