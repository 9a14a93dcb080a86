"""Pure logic of the broadcast path: serialisation, retry delays, settings, URLs."""

from __future__ import annotations

import asyncio
from datetime import date, time, timedelta
from decimal import Decimal

import pytest
from pydantic import BaseModel

from supabase_push._portal import Portal
from supabase_push.broadcast import Message, RetryPolicy, jsonable
from supabase_push.broadcast.rest import broadcast_endpoint
from supabase_push.broadcast.websocket import realtime_url
from supabase_push.config import Settings, scrub
from supabase_push.errors import ConfigError, PayloadError


@pytest.mark.parametrize(("value", "expected"), [
    (Decimal("13.50"), 13.5),
    (Decimal("1200"), 1200.0),
    (Decimal("-0.01"), -0.01),
    (Decimal("123456789012345678901234567890.5"), "123456789012345678901234567890.5"),
    (Decimal("0.30000000000000000001"), "0.30000000000000000001"),
    (date(2026, 11, 21), "2026-11-21"),
    (time(9, 30), "09:30:00"),
    (timedelta(milliseconds=1500), 1.5),
    ((1, "a"), [1, "a"]),
    (True, True),
])
def test_jsonable(value: object, expected: object) -> None:
    assert jsonable(value) == expected


def test_jsonable_models_and_nesting() -> None:
    class Leg(BaseModel):
        strike: Decimal
        note: str | None = None

    assert jsonable({"legs": [Leg(strike=Decimal("600"))]}) == {"legs": [{"strike": 600.0}]}
    deep: dict[str, object] = {}
    node = deep
    for _ in range(5000):
        node["n"] = {}
        node = node["n"]  # type: ignore[assignment]
    with pytest.raises(PayloadError, match="nested too deeply"):
        Message.build("t", "e", deep, private=False, max_bytes=10**9)


def test_message_checks_topic_event_and_size() -> None:
    with pytest.raises(PayloadError, match="topic"):
        Message.build(" ", "e", {}, private=False, max_bytes=100)
    with pytest.raises(PayloadError, match="event"):
        Message.build("t", "", {}, private=False, max_bytes=100)
    message = Message.build("t", "e", {"é": "ü"}, private=True, max_bytes=100)
    assert message.body == '{"é":"ü"}'.encode() and message.private


def test_retry_delays_grow_with_jitter_and_honour_retry_after() -> None:
    policy = RetryPolicy(base_delay=0.1, max_delay=1.0)
    for attempt, ceiling in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (9, 1.0)]:
        delays = {policy.delay(attempt) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays) and len(delays) > 1
    assert policy.delay(1, retry_after=2.5) == 2.5
    assert policy.delay(1, retry_after=10_000) == 60.0


def test_settings_from_env() -> None:
    settings = Settings.from_env({"SUPABASE_URL": "https://abc.supabase.co/", "SUPABASE_SERVICE_KEY": "k" * 20,
                                  "SUPABASE_ANON_KEY": "a" * 20, "SUPABASE_PUSH_PRIVATE": "false",
                                  "SUPABASE_PUSH_MAX_PAYLOAD_BYTES": "3000000"})
    assert settings.supabase_url == "https://abc.supabase.co"
    assert settings.api_key == "k" * 20 and not settings.private and settings.max_payload_bytes == 3_000_000
    assert "k" * 20 not in repr(settings) and "a" * 20 not in repr(settings)
    assert Settings.from_env({"SUPABASE_SERVICE_ROLE_KEY": "new", "SUPABASE_SERVICE_KEY": "old"}).api_key == "new"
    renamed = Settings.from_env({"SUPABASE_SECRET_KEY": "sb_secret_x", "SUPABASE_PUBLISHABLE_KEY": "sb_publishable_y"})
    assert (renamed.service_role_key, renamed.anon_key) == ("sb_secret_x", "sb_publishable_y")
    for bad in ({"SUPABASE_PUSH_PRIVATE": "maybe"}, {"SUPABASE_PUSH_MAX_PAYLOAD_BYTES": "-1"},
                {"SUPABASE_URL": "abc.supabase.co"}, {"SUPABASE_PUSH_BROADCAST": "smtp"}):
        with pytest.raises(ConfigError):
            Settings.from_env(bad)


def test_urls() -> None:
    for url in ("https://abc.supabase.co", "https://abc.supabase.co/", "https://abc.supabase.co/realtime/v1"):
        assert broadcast_endpoint(url) == "https://abc.supabase.co/realtime/v1/api/broadcast"
        assert realtime_url(url) == "wss://abc.supabase.co/realtime/v1"
    assert realtime_url("http://127.0.0.1:54321") == "ws://127.0.0.1:54321/realtime/v1"


def test_scrub() -> None:
    assert scrub("key=supersecretkey!", ["supersecretkey", None, "x"]) == "key=***!"


def test_portal_refuses_to_wait_on_itself() -> None:
    portal = Portal()

    async def inner() -> int:
        return 1

    async def outer() -> None:
        portal.call(inner())

    try:
        assert portal.call(inner()) == 1
        with pytest.raises(RuntimeError, match="wait forever"):
            portal.call(outer())
    finally:
        portal.close()
    assert asyncio.run(asyncio.sleep(0, "still fine")) == "still fine"
