"""Hostile input, fuzzed with hypothesis: every case gets a clear error or a clean result, never a crash.

Pure decoders get thousands of cases; the live server and the CLI get fewer, each against
the real thing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import string
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supabase_push.errors import ConfigError
from supabase_push.events import START, Cursor
from supabase_push.local import LocalRealtime, frames
from supabase_push.local import change_filters as server_filters
from supabase_push.schema import parse_route
from supabase_push.subscribe import RowFilter, Sequencer
from supabase_push.subscribe.transports import Hint, parse_push

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=20)
HOSTILE_JSON = [
    "[" * 100_000 + "]" * 100_000,                   # deep nesting
    '{"a":' * 50_000 + "1" + "}" * 50_000,
    '{"cursor": "1:1", "id": NaN}', '{"id": 1e999999}', "9" * 5000,  # NaN, huge numbers
    b"\xff\xfe\x00garbage",                           # invalid UTF-8
    "", " ", "null", "[]", '"string"',
]
MANY = settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@MANY
@given(st.one_of(st.text(), st.binary(), json_values.map(json.dumps)), st.sampled_from(["1.0.0", "2.0.0"]))
def test_text_frames_decode_or_raise_frame_error(text: str | bytes, vsn: str) -> None:
    try:
        message = frames.decode_text(vsn, text)
    except frames.FrameError:
        return
    assert isinstance(message.topic, str) and isinstance(message.event, str)


@pytest.mark.parametrize("text", HOSTILE_JSON)
@pytest.mark.parametrize("vsn", ["1.0.0", "2.0.0"])
def test_hostile_json_frames(text: str | bytes, vsn: str) -> None:
    with contextlib.suppress(frames.FrameError):
        frames.decode_text(vsn, text)


@MANY
@given(st.binary(max_size=300), st.lists(st.integers(0, 255), min_size=6, max_size=6))
def test_binary_frames_with_wrong_lengths(body: bytes, header: list[int]) -> None:
    for data in (bytes([3, *header]) + body, bytes([3]) + body, body):
        try:
            message = frames.decode_binary(data)
        except frames.FrameError:
            continue
        assert message.event == "broadcast"


@MANY
@given(st.text(max_size=60))
def test_filter_strings(text: str) -> None:
    try:
        RowFilter.parse(text)
    except ConfigError as exc:
        assert "row filter" in exc.message
    with contextlib.suppress(server_filters.FilterError):
        server_filters.parse(text)


@MANY
@given(st.one_of(json_values, json_values.map(json.dumps), st.text(), st.binary()))
def test_change_payloads_given_to_the_subscriber(payload: Any) -> None:
    event = parse_push(payload)
    if event is not None:
        Sequencer(["trade-updates"], START).judge(event.event if isinstance(event, Hint) else event)


@pytest.mark.parametrize("payload", HOSTILE_JSON)
def test_hostile_change_payloads(payload: str | bytes) -> None:
    assert parse_push(payload) is None


@MANY
@given(st.dictionaries(st.text(max_size=20), st.text(max_size=20), max_size=4),
       st.text(alphabet=string.digits + ":", min_size=1, max_size=12))
def test_forged_prev_and_cursor_never_crash_the_sequencer(prev: dict[str, str], cursor: str) -> None:
    envelope = {"id": 1, "cursor": cursor, "topic": "trade-updates", "schema": "public", "table": "trades",
                "op": "INSERT", "record": {}, "commit_ts": "2026-12-01T00:00:00Z", "prev": prev}
    event = parse_push(json.dumps(envelope))
    if event is None:
        return
    assert not isinstance(event, Hint)  # text is parsed with exact numbers
    try:
        position = event.position
    except ValueError:
        return
    Sequencer(["trade-updates"], Cursor(1, 1)).judge(event) if position else None


@MANY
@given(st.text(max_size=80))
def test_route_strings(text: str) -> None:
    try:
        route = parse_route(text)
    except ConfigError:
        return
    assert route.table and route.topic


@pytest.mark.parametrize("text", ['{"topic":"t","event":"e","payload":{"x":NaN},"ref":"1"}',
                                  '{"topic":"t","event":"e","payload":{"x":1e999},"ref":"1"}',
                                  '{"topic":"t","event":"e","payload":{"x":-Infinity},"ref":"1"}'])
def test_nan_and_infinity_are_not_json(text: str) -> None:
    """Re-sent, they would break every JavaScript client on the channel."""
    with pytest.raises(frames.FrameError, match="not JSON"):
        frames.decode_text("1.0.0", text)


# -- the live server: random frames and bodies, then it still answers --------------------------


async def test_the_live_server_survives_random_frames(realtime: LocalRealtime) -> None:
    from websockets.asyncio.client import connect

    samples = st.one_of(st.text(max_size=200), st.binary(max_size=200), json_values.map(json.dumps),
                        st.sampled_from(HOSTILE_JSON))
    rng = random.Random(7)
    cases = _draw(samples, 300, rng)
    for vsn in ("1.0.0", "2.0.0"):
        url = f"{realtime.realtime_url}/websocket?apikey={realtime.anon_key}&vsn={vsn}"
        async with connect(url, max_size=None) as ws:
            for case in cases:
                await ws.send(case)
            heartbeat: Any = ({"topic": "phoenix", "event": "heartbeat", "payload": {}, "ref": "hb"} if vsn == "1.0.0"
                         else [None, "hb", "phoenix", "heartbeat", {}])
            await ws.send(json.dumps(heartbeat))
            async with asyncio.timeout(10):
                while True:
                    reply = json.loads(await ws.recv())
                    ref = reply.get("ref") if isinstance(reply, dict) else reply[1]
                    if ref == "hb":
                        break


async def test_rest_broadcast_bodies_get_4xx_never_5xx(realtime: LocalRealtime) -> None:
    rng = random.Random(11)
    bodies = _draw(st.one_of(json_values.map(json.dumps), st.text(max_size=100), st.binary(max_size=100),
                             st.sampled_from([h for h in HOSTILE_JSON if isinstance(h, str)])), 300, rng)
    headers = {"apikey": realtime.service_role_key, "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=realtime.url, headers=headers) as http:
        for body in bodies:
            for path in ("/realtime/v1/api/broadcast", "/realtime/v1/api/broadcast/fuzz/events/e"):
                response = await http.post(path, content=body)
                assert response.status_code in (202, 400, 413, 415, 422), (path, body[:80], response.text)


def _draw(strategy: st.SearchStrategy[Any], count: int, rng: random.Random) -> list[Any]:
    """``count`` examples from ``strategy``, reproducibly (for tests that talk to a live server)."""
    found: list[Any] = []

    @settings(max_examples=count, database=None, derandomize=True, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(value: Any) -> None:
        found.append(value)

    collect()
    rng.shuffle(found)
    return found


# -- the JSON decoder's fast path (orjson) against its Python path ------------------------------

numbers = st.from_regex(r"-?(0|[1-9][0-9]{0,24})(\.[0-9]{1,24})?([eE][-+]?[0-9]{1,3})?", fullmatch=True)
texts_with_numbers = st.one_of(
    json_values.map(json.dumps),
    st.lists(numbers, max_size=6).map(lambda items: "[" + ",".join(items) + "]"),
    st.dictionaries(st.text(max_size=6), numbers, max_size=4).map(
        lambda d: "{" + ",".join(f"{json.dumps(k)}: {v}" for k, v in d.items()) + "}"),
    st.text(), st.binary())


@MANY
@given(texts_with_numbers, st.booleans())
def test_the_fast_json_path_parses_as_the_python_one(text: str | bytes, exact: bool) -> None:
    """The same value of the same type (a float only where Python's decoders give one), or the same refusal."""
    from supabase_push import _json

    def outcome(parse: Any) -> str:
        try:
            return repr(parse())
        except ValueError as exc:
            return type(exc).__name__ if not isinstance(exc, UnicodeDecodeError) else "ValueError"

    fast = outcome(lambda: _json.loads(text, exact_numbers=exact))
    python = outcome(lambda: _json._decode(text, exact))
    assert fast == python or (fast, python) == ("ValueError", "JSONDecodeError") or \
        (fast, python) == ("JSONDecodeError", "ValueError")
