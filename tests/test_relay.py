"""The SSE relay against a real Postgres: who sees what, resuming by Last-Event-ID, limits, stats."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import socket
import time
import uuid

import httpx
import psycopg
import pytest

from supabase_push import changelog
from supabase_push.relay import Policy

from .relay_helpers import (
    ADMIN,
    ALICE,
    BOB,
    TOPICS,
    SseStream,
    cursors_of,
    data,
    insert_trades,
    relay,
    stats_of,
    token,
)

pytestmark = pytest.mark.slow


async def test_each_user_sees_only_their_own_rows_and_the_admin_sees_all(installed_url: str) -> None:
    async with relay(installed_url) as server, \
            SseStream(server.url, token(ALICE)) as alice, SseStream(server.url, token(BOB)) as bob, \
            SseStream(server.url, ADMIN) as admin:
        insert_trades(installed_url, [ALICE, BOB, BOB, ALICE, BOB])
        got_alice, got_bob, got_admin = await alice.take(2), await bob.take(3), await admin.take(5)
        assert [e.id for e in got_alice] == cursors_of(installed_url, ALICE)
        assert [e.id for e in got_bob] == cursors_of(installed_url, BOB)
        assert [e.id for e in got_admin] == cursors_of(installed_url)
        assert {data(e)["record"]["user_id"] for e in got_alice} == {ALICE}
        assert all(data(e)["cursor"] == e.id and "prev" not in data(e) for e in got_admin)
        assert await alice.quiet() == [] and await bob.quiet() == []


async def test_a_reconnecting_browser_gets_exactly_what_it_missed(installed_url: str) -> None:
    async with relay(installed_url) as server:
        async with SseStream(server.url, token(ALICE)) as first:
            insert_trades(installed_url, [ALICE] * 3)
            seen = await first.take(3)
        insert_trades(installed_url, [ALICE, BOB] * 5)  # written while the browser was away
        async with SseStream(server.url, token(ALICE), last_id=seen[-1].id) as again:
            missed = await again.take(5)
            insert_trades(installed_url, [ALICE])
            live = await again.take(1)
            assert await again.quiet() == []
    assert [e.id for e in seen + missed + live] == cursors_of(installed_url, ALICE)


async def test_resuming_from_further_back_than_the_ring_reads_the_log(installed_url: str) -> None:
    async with relay(installed_url, ring_size=5, buffer=5000) as server:
        async with SseStream(server.url, token(ALICE)) as first:
            insert_trades(installed_url, [ALICE])
            seen = await first.take(1)
        insert_trades(installed_url, [ALICE, BOB] * 40)
        await asyncio.sleep(0.5)  # the relay's ring has moved on past the browser's cursor
        async with SseStream(server.url, token(ALICE), last_id=seen[-1].id) as again:
            missed = await again.take(40)
            assert await again.quiet() == []
        stats = await stats_of(server)
        assert stats["replay_ring"]["events"] == 5
    assert [e.id for e in seen + missed] == cursors_of(installed_url, ALICE)


async def test_a_browser_resumes_across_a_relay_restart(installed_url: str) -> None:
    async with relay(installed_url) as server, SseStream(server.url, token(ALICE)) as first:
        insert_trades(installed_url, [ALICE] * 2)
        seen = await first.take(2)
    insert_trades(installed_url, [ALICE, BOB] * 4)  # no relay running
    async with relay(installed_url) as server, SseStream(server.url, token(ALICE), last_id=seen[-1].id) as again:
        insert_trades(installed_url, [ALICE])
        rest = await again.take(5)
    assert [e.id for e in seen + rest] == cursors_of(installed_url, ALICE)


async def test_tiers_and_shared_topics(installed_url: str) -> None:
    policy = Policy(topics=TOPICS, shared_topics=["portfolio-updates"], topic_tiers={"trade-updates": ["pro", "elite"]})
    async with relay(installed_url, policy=policy) as server:
        async with SseStream(server.url, token(ALICE, tier="free"), topics="trade-updates") as refused:
            pass
        assert refused.status == 403 and "needs tier pro or elite; your tier is free" in (refused.error or {})["error"]
        async with SseStream(server.url, token(ALICE, tier="free")) as free, \
                SseStream(server.url, token(BOB, tier="pro")) as pro:
            insert_trades(installed_url, [ALICE, BOB])
            with psycopg.connect(installed_url, autocommit=True) as conn:
                conn.execute("INSERT INTO portfolio_snapshots (user_id, total_value) VALUES (%s, 1)", (BOB,))
            # free: no trades at all (not even their own), but the shared portfolio topic whole
            assert [data(e)["topic"] for e in await free.take(1)] == ["portfolio-updates"]
            assert [data(e)["topic"] for e in await pro.take(2)] == ["trade-updates", "portfolio-updates"]
            assert await free.quiet() == []


@pytest.mark.parametrize(("bad", "status", "needle"), [
    (None, 401, "no token"),
    (token(ALICE, secret="another-secret-of-at-least-32-bytes!!"), 401, "Signature verification failed"),
    (token(ALICE, ttl=-10), 401, "expired"),
    (token(ALICE, nbf=int(time.time()) + 600), 401, "not yet valid"),
    ("not-a-jwt", 401, "token not accepted"),
    (token(None), 401, "names no user"),
])
async def test_bad_tokens_are_refused(installed_url: str, bad: str | None, status: int, needle: str) -> None:
    async with relay(installed_url) as server, SseStream(server.url, bad) as stream:
        pass
    assert stream.status == status and needle in (stream.error or {})["error"]


async def test_alg_none_is_refused(installed_url: str) -> None:
    import base64
    import json

    def b64(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    forged = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64({'sub': ALICE, 'exp': time.time() + 60})}."
    async with relay(installed_url) as server, SseStream(server.url, forged) as stream:
        pass
    assert stream.status == 401


async def test_token_in_the_query_string_for_eventsource_and_never_in_a_log(
        installed_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret_token = token(ALICE)
    async with relay(installed_url) as server, SseStream(server.url, secret_token, query_token=True) as stream:
        insert_trades(installed_url, [ALICE])
        assert len(await stream.take(1)) == 1
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith(("supabase_push", "uvicorn")))
    assert "stream 1 opened for " + ALICE in ours  # (httpx, the test's own client, does log its URL)
    assert secret_token.split(".")[2] not in ours


async def test_bad_parameters_get_clear_errors(installed_url: str) -> None:
    async with relay(installed_url) as server:
        async with SseStream(server.url, token(ALICE), last_id="yesterday") as bad_cursor:
            pass
        async with SseStream(server.url, token(ALICE), topics="nope") as bad_topic:
            pass
    assert bad_cursor.status == 400 and "not a cursor" in (bad_cursor.error or {})["error"]
    assert bad_topic.status == 400 and "unknown topic 'nope'" in (bad_topic.error or {})["error"]


async def test_connections_per_user_are_limited(installed_url: str) -> None:
    async with relay(installed_url, max_per_user=2) as server:
        async with SseStream(server.url, token(ALICE)), SseStream(server.url, token(ALICE)) as second:
            async with SseStream(server.url, token(ALICE)) as third:
                pass
            assert third.status == 429 and "2 streams open" in (third.error or {})["error"]
            async with SseStream(server.url, token(BOB)) as other_user:
                assert other_user.status == 200
            stats = await stats_of(server)
            assert stats["per_user"] == {ALICE: 2} and stats["refused"] == {"per-user limit": 1}
        async with SseStream(server.url, token(ALICE)) as later:
            assert later.status == 200 and second.status == 200


async def test_heartbeats_keep_an_idle_stream_alive(installed_url: str) -> None:
    async with relay(installed_url, heartbeat=0.2) as server, SseStream(server.url, token(ALICE)) as stream:
        await asyncio.sleep(1.1)
        assert stream.parser.comments >= 4  # the opening comment, then one every 0.2 s
        assert stream.parser.retry_ms == 1000


async def test_a_client_that_never_reads_is_cut_off_and_stalls_no_one(installed_url: str) -> None:
    # The buffer holds more than one stamping round: a round's changes reach the hub at once (here up to
    # some 50 commits), and a buffer smaller than that would cut the reader that keeps up too.
    async with relay(installed_url, buffer=200) as server:
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", server.port))
        stalled.sendall(f"GET /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token(ALICE)}\r\n\r\n".encode())
        try:
            async with SseStream(server.url, token(ALICE)) as reader:
                big = "x" * 7500  # 7.5 MB in all: more than loopback's socket buffers (4 MB send) hold
                for _ in range(20):
                    await asyncio.to_thread(insert_trades, installed_url, [ALICE] * 50, "BIG", big)
                got = await reader.take(1000, timeout=60)
            assert [e.id for e in got] == cursors_of(installed_url, ALICE)
            stats = await stats_of(server)
            assert stats["dropped_slow_clients"] == 1 and stats["per_user"] == {}
        finally:
            stalled.close()


async def test_stats_and_healthz(installed_url: str) -> None:
    async with relay(installed_url) as server, SseStream(server.url, token(ALICE, tier="pro")), \
            SseStream(server.url, token(BOB)):
        insert_trades(installed_url, [ALICE, BOB])
        await asyncio.sleep(0.5)
        async with httpx.AsyncClient(base_url=server.url) as http:
            stats = (await http.get("/stats", headers={"Authorization": f"Bearer {ADMIN}"})).json()
            forbidden = await http.get("/stats", headers={"Authorization": f"Bearer {token(ALICE)}"})
            anonymous = await http.get("/stats")
            health = await http.get("/healthz")
    assert stats["connections"] == 2 and stats["per_tier"] == {"pro": 1, "none": 1}
    assert stats["per_user"] == {ALICE: 1, BOB: 1} and stats["events_per_second"] > 0
    assert stats["subscriber"]["state"] == "push:listen" and stats["dropped_slow_clients"] == 0
    assert forbidden.status_code == 403 and anonymous.status_code == 401
    assert health.status_code == 200 and health.json()["status"] == "ok"


async def test_browsers_dropping_and_reconnecting_under_8_writers_miss_nothing(installed_url: str) -> None:
    """8 writers, 1,200 changes across 4 users; 8 browsers that drop and reconnect at random (one from a
    cursor older than the ring), and the relay restarted midway: each stream equals its user's rows."""
    users = [str(uuid.UUID(int=n)) for n in range(1, 5)]

    async def writer(n: int) -> None:
        rng = random.Random(n)
        async with await psycopg.AsyncConnection.connect(installed_url, autocommit=True) as conn:
            for _ in range(150):
                async with conn.transaction():
                    for _ in range(rng.randint(1, 2)):
                        await conn.execute("INSERT INTO trades (user_id, symbol, side, quantity, price) "
                                           "VALUES (%s, 'W', 'buy', 1, 1)", (rng.choice(users),))
                await asyncio.sleep(rng.uniform(0, 0.004))

    got: dict[int, list[str | None]] = {n: [] for n in range(8)}
    done = asyncio.Event()

    async def browser(n: int, servers: list[str]) -> None:
        rng = random.Random(100 + n)
        while not done.is_set():
            last = got[n][-1] if got[n] else start
            async with SseStream(servers[-1], token(users[n % 4]), last_id=last) as stream:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(rng.uniform(0.05, 0.4)):
                        while True:
                            got[n].append((await stream.events.get()).id)
            await asyncio.sleep(rng.uniform(0, 0.2))

    with psycopg.connect(installed_url) as conn:
        start = str(changelog.read_head(conn))
    servers: list[str] = []
    async with relay(installed_url, ring_size=50) as first:
        servers.append(first.url)
        browsers = [asyncio.create_task(browser(n, servers)) for n in range(8)]
        writers = asyncio.gather(*(writer(n) for n in range(8)))
        await asyncio.sleep(1)
    async with relay(installed_url, ring_size=50) as second:  # restarted: the first one's streams all broke
        servers.append(second.url)
        await writers
        expected = {n: cursors_of(installed_url, users[n % 4], after=start) for n in range(8)}
        async with asyncio.timeout(30):
            while any(len(got[n]) < len(expected[n]) for n in range(8)):
                await asyncio.sleep(0.1)
        done.set()
        await asyncio.gather(*browsers)
    for n in range(8):
        assert got[n] == expected[n], f"browser {n}: {len(got[n])} events, expected {len(expected[n])}"
    assert sum(len(e) for e in expected.values()) >= 2 * 1200


async def test_a_stream_ends_when_its_token_expires(installed_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="supabase_push.relay")
    short = token(ALICE, ttl=2)
    async with relay(installed_url) as server, SseStream(server.url, short) as stream:
        insert_trades(installed_url, [ALICE])
        assert len(await stream.take(1)) == 1
        await asyncio.wait_for(stream.ended.wait(), 5)
        async with SseStream(server.url, short) as again:
            pass
    assert again.status == 401 and "expired" in (again.error or {})["error"]
    assert "(token expired)" in caplog.text


async def test_a_browser_behind_retention_gets_a_gap_event_first(installed_url: str) -> None:
    from datetime import timedelta

    from supabase_push import schema

    async with relay(installed_url, ring_size=1) as server:
        async with SseStream(server.url, token(ALICE)) as first:
            insert_trades(installed_url, [ALICE])
            seen = await first.take(1)
        insert_trades(installed_url, [ALICE])  # missed, and then pruned
        await asyncio.sleep(1.2)
        async with SseStream(server.url, token(ALICE)) as watcher:
            insert_trades(installed_url, [ALICE])
            await watcher.take(1)  # the ring (one event) has moved past the missed change
        with psycopg.connect(installed_url, autocommit=True) as conn:
            pruned = schema.prune(conn, timedelta(seconds=1))
        async with SseStream(server.url, token(ALICE), last_id=seen[0].id) as again:
            gap, after = await again.take(2)
            assert await again.quiet() == []
    assert pruned.deleted == 2
    assert gap.event == "gap" and data(gap)["op"] == "GAP" and data(gap)["record"]["after"] == seen[0].id
    assert gap.id == pruned.pruned_through
    assert [after.id] == cursors_of(installed_url, ALICE)  # the one change left in the log


async def test_a_row_moved_to_another_owner_leaves_one_stream_and_enters_the_other(installed_url: str) -> None:
    """Regression: the new owner got the old owner's row in old_record; the old owner got nothing."""
    async with relay(installed_url) as server, \
            SseStream(server.url, token(ALICE), topics="position-updates") as alice, \
            SseStream(server.url, token(BOB), topics="position-updates") as bob:
        with psycopg.connect(installed_url, autocommit=True) as conn:
            conn.execute("INSERT INTO positions (user_id, symbol, quantity) VALUES (%s, 'ALICES', 5)", (ALICE,))
            conn.execute("UPDATE positions SET user_id = %s, symbol = 'BOBS', quantity = 9 WHERE symbol = 'ALICES'",
                         (BOB,))
        inserted, removed = [data(e) for e in await alice.take(2)]
        [arrived] = [data(e) for e in await bob.take(1)]
        assert await bob.quiet(0.3) == []
    assert inserted["op"] == "INSERT" and removed["op"] == "DELETE"
    assert removed["record"] is None and removed["old_record"]["symbol"] == "ALICES"
    assert "BOBS" not in json.dumps(removed) and BOB not in json.dumps(removed)
    assert arrived["op"] == "INSERT" and arrived["old_record"] is None and arrived["record"]["symbol"] == "BOBS"
    assert "ALICES" not in json.dumps(arrived) and ALICE not in json.dumps(arrived)
    assert removed["cursor"] == arrived["cursor"]


async def test_time_claims_must_be_numbers_and_healthz_keeps_the_cursor_private(installed_url: str) -> None:
    """A signed token whose exp is a string skipped the stream's expiry timer; /healthz (public) showed the
    log's cursor."""
    far = token(ALICE, exp=str(int(time.time()) + 3600))
    async with relay(installed_url) as server:
        async with SseStream(server.url, far) as stream:
            pass
        async with httpx.AsyncClient(base_url=server.url) as http:
            health = (await http.get("/healthz")).json()
            stats = (await http.get("/stats", headers={"Authorization": f"Bearer {ADMIN}"})).json()
    assert stream.status == 401 and "'exp' claim is not a number" in (stream.error or {})["error"]
    assert "cursor" not in health and health["status"] == "ok"
    assert "cursor" in stats["subscriber"]


async def test_a_token_for_another_audience_is_refused(installed_url: str) -> None:
    """Without --audience any aud used to be accepted: a token minted for another service opened a stream."""
    async with relay(installed_url) as server:
        async with SseStream(server.url, token(ALICE, aud="billing-service")) as other:
            pass
        async with SseStream(server.url, token(ALICE, aud="authenticated")) as user:
            assert user.status == 200
        async with SseStream(server.url, token(ALICE)) as key_like:
            assert key_like.status == 200
    assert other.status == 401 and "audience 'billing-service'" in (other.error or {})["error"]


async def test_a_truncate_reaches_every_stream_of_its_topic(installed_url: str) -> None:
    """It carries no row, so no owner: each user learns the table was emptied (their rows with it)."""
    async with relay(installed_url) as server, \
            SseStream(server.url, token(ALICE), topics="trade-updates") as alice, \
            SseStream(server.url, token(BOB), topics="trade-updates") as bob, \
            SseStream(server.url, token(BOB), topics="position-updates") as elsewhere:
        with psycopg.connect(installed_url, autocommit=True) as conn:
            conn.execute("TRUNCATE trades")
        [to_alice], [to_bob] = [data(e) for e in await alice.take(1)], [data(e) for e in await bob.take(1)]
        assert await elsewhere.quiet(0.3) == []
    assert to_alice["op"] == to_bob["op"] == "TRUNCATE" and to_alice["record"] is None
