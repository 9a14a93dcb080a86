"""500 websocket clients on one topic all receive one broadcast (bench/fanout.py times it)."""

from __future__ import annotations

import asyncio
import json

import httpx
from websockets.asyncio.client import ClientConnection, connect

from supabase_push.local import LocalRealtime
from tests.realtime_helpers import unique

CLIENTS = 500


async def test_500_clients_on_one_topic_all_receive_a_broadcast(realtime: LocalRealtime) -> None:
    topic = unique("fanout")
    url = f"ws://127.0.0.1:{realtime.port}/realtime/v1/websocket?apikey={realtime.anon_key}&vsn=1.0.0"

    async def join(i: int) -> ClientConnection:
        ws = await connect(url, compression=None)
        await ws.send(json.dumps({"topic": f"realtime:{topic}", "event": "phx_join",
                                  "payload": {"config": {}}, "ref": "1", "join_ref": "1"}))
        reply = json.loads(await ws.recv())
        assert reply["payload"]["status"] == "ok", reply
        return ws

    clients: list[ClientConnection] = []
    try:
        for start in range(0, CLIENTS, 100):
            clients += await asyncio.gather(*(join(i) for i in range(start, start + 100)))
        async with httpx.AsyncClient() as http:
            response = await http.post(f"{realtime.url}/realtime/v1/api/broadcast", headers={
                "apikey": realtime.service_role_key}, json={"messages": [
                    {"topic": topic, "event": "tick", "payload": {"px": 101.25}}]})
        assert response.status_code == 202

        async def receive(ws: ClientConnection) -> dict[str, object]:
            return json.loads(await asyncio.wait_for(ws.recv(), 20))  # type: ignore[no-any-return]

        received = await asyncio.gather(*(receive(ws) for ws in clients))
        assert len(received) == CLIENTS
        assert all(m["event"] == "broadcast" and m["payload"] == {"type": "broadcast", "event": "tick",
                                                                  "payload": {"px": 101.25}} for m in received)
    finally:
        await asyncio.gather(*(ws.close() for ws in clients), return_exceptions=True)
