"""Resource bounds: idle websockets cost little, a client that never reads is cut off without
stalling others, and a subscriber whose consumer stops reading stays bounded. Figures printed."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import httpx
import psutil
from websockets.asyncio.client import connect

from supabase_push.local import LocalRealtime, ServerConfig
from supabase_push.subscribe import RealtimeTransport, SqlReader, Subscriber

from .subscriber_helpers import TOPICS, logged, write


def join(topic: str) -> str:
    return json.dumps({"topic": f"realtime:{topic}", "event": "phx_join", "payload": {"config": {}}, "ref": "1",
                       "join_ref": "1"})


async def test_2000_idle_websockets(realtime_db: str) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "supabase_push", "serve", "--db-url", realtime_db, "--port", "0",
                             "--json"], stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    assert proc.stdout is not None
    try:
        info = json.loads(proc.stdout.readline())
        server = psutil.Process(proc.pid)
        url = f"{info['realtime_url']}/websocket?apikey={info['anon_key']}&vsn=1.0.0"
        before = server.memory_info().rss
        sockets = []
        for n in range(2000):
            ws = await connect(url, compression=None)
            await ws.send(join(f"idle-{n}"))
            await ws.recv()
            sockets.append(ws)
        await asyncio.sleep(1)
        grown = server.memory_info().rss - before
        per_socket_kb = grown / 2000 / 1024
        print(f"2,000 idle websockets: server RSS +{grown / 2**20:.1f} MB, {per_socket_kb:.1f} kB each")
        async with connect(url) as probe:  # still serving
            await probe.send(json.dumps({"topic": "phoenix", "event": "heartbeat", "payload": {}, "ref": "hb"}))
            assert json.loads(await asyncio.wait_for(probe.recv(), 10))["ref"] == "hb"
        await asyncio.gather(*(ws.close() for ws in sockets))
        assert per_socket_kb < 200, f"{per_socket_kb:.0f} kB per idle socket"
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


async def test_a_client_that_never_reads_cannot_stall_others(realtime_db: str) -> None:
    async with LocalRealtime(realtime_db, ServerConfig(port=0, outbox_limit=2000)) as server:
        url = f"{server.realtime_url}/websocket?apikey={server.anon_key}&vsn=1.0.0"
        async with connect(url, max_queue=1) as stuck, connect(url, max_queue=None) as reader:
            for ws in (stuck, reader):
                await ws.send(join("firehose"))
                await ws.recv()
            messages = [{"topic": "firehose", "event": "tick", "payload": {"n": n, "pad": "x" * 8000}}
                        for n in range(10_000)]
            started = time.monotonic()
            async with httpx.AsyncClient(base_url=server.url, headers={"apikey": server.service_role_key}) as http:
                for start in range(0, len(messages), 500):
                    response = await http.post("/realtime/v1/api/broadcast",
                                               json={"messages": messages[start:start + 500]})
                    assert response.status_code == 202
            got = 0
            async with asyncio.timeout(30):
                while got < 10_000:
                    frame = json.loads(await reader.recv())
                    got += frame["event"] == "broadcast"
            took = time.monotonic() - started
            print(f"10,000 broadcasts of 8 kB reached the reading client in {took:.2f} s beside one that never reads")
            # The server gave up on the stuck one (close 1013); paused, it never reads the close frame.
            async with asyncio.timeout(10):
                while len([s for s in server.sessions if not s.closed]) > 1:
                    await asyncio.sleep(0.05)


async def test_a_consumer_that_stops_reading_stays_bounded(realtime: LocalRealtime, realtime_db: str) -> None:
    """12,000 changes while nobody reads: the queues stop at their bounds (the rest waits in the log)."""
    me = psutil.Process()
    before_log = logged(realtime_db)
    push = RealtimeTransport(realtime.url, realtime.service_role_key, liveness_interval=1)
    subscriber = Subscriber(reader=SqlReader(realtime_db), push=push, topics=TOPICS,
                            start=before_log[-1] if before_log else None)
    async with subscriber:
        await asyncio.wait_for(subscriber.wait_ready(), 10)
        rss = me.memory_info().rss
        for _ in range(6):
            await write(realtime_db, changes=2000)
        await asyncio.sleep(1)
        grown = (me.memory_info().rss - rss) / 2**20
        print(f"12,000 changes unread: this process grew {grown:.1f} MB (server thread included)")
        got = []
        async with asyncio.timeout(60):
            async for event in subscriber:
                got.append(str(event.cursor))
                if len(got) >= 12_000:
                    break
    assert got == logged(realtime_db)[len(before_log):]
    assert grown < 150, f"grew {grown:.0f} MB"


async def test_a_client_that_never_reads_is_bounded_by_bytes_too(realtime_db: str) -> None:
    """Regression: the bound was frames only, so 120 broadcasts of 2.5 MB to a stuck client took the server from
    69 to 365 MB. Past ``outbox_limit_bytes`` it is cut off (1013) however few frames that is."""
    config = ServerConfig(port=0, outbox_limit_bytes=4_000_000)
    async with LocalRealtime(realtime_db, config) as server:
        url = f"{server.realtime_url}/websocket?apikey={server.anon_key}&vsn=1.0.0"
        async with connect(url, max_queue=1, max_size=None) as stuck:
            await stuck.send(join("big"))
            await stuck.recv()
            async with httpx.AsyncClient(base_url=server.url, headers={"apikey": server.service_role_key},
                                         timeout=30) as http:
                for n in range(30):  # 30 MB in all, 30 frames: far under the 50,000-frame bound
                    response = await http.post("/realtime/v1/api/broadcast", json={"messages": [
                        {"topic": "big", "event": "blob", "payload": {"n": n, "pad": "x" * 1_000_000}}]})
                    assert response.status_code == 202
            async with asyncio.timeout(10):
                while any(not s.closed for s in server.sessions):
                    await asyncio.sleep(0.05)
