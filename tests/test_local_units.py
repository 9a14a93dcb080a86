"""Pure logic of the local server: frames, tokens, filters, pgoutput values (no I/O)."""

from __future__ import annotations

import json
import time

import pytest

from supabase_push.local import change_filters, frames, tokens
from supabase_push.local.channels import Binding
from supabase_push.local.pgoutput import TypeInfo, parse_array, to_json

SECRET = "a-test-secret-that-is-at-least-32-characters"


def test_frames_round_trip_both_versions() -> None:
    v1 = frames.decode_text("1.0.0", '{"topic":"realtime:a","event":"phx_join","payload":{},"ref":"1","join_ref":"1"}')
    assert v1 == frames.Frame("realtime:a", "phx_join", {}, "1", "1")
    v2 = frames.decode_text("2.0.0", '["1","2","realtime:a","broadcast",{"x":1}]')
    assert v2 == frames.Frame("realtime:a", "broadcast", {"x": 1}, "2", "1")
    out = frames.Frame("realtime:a", "phx_reply", {"status": "ok"}, "2", "1")
    assert json.loads(frames.encode("1.0.0", out)) == {"topic": "realtime:a", "event": "phx_reply",
                                                       "payload": {"status": "ok"}, "ref": "2"}
    assert json.loads(frames.encode("2.0.0", out)) == ["1", "2", "realtime:a", "phx_reply", {"status": "ok"}]
    raw = frames.Frame("t", "e", frames.RawJSON('{"pre":"encoded"}'))
    assert json.loads(frames.encode("1.0.0", raw))["payload"] == {"pre": "encoded"}


@pytest.mark.parametrize(("vsn", "text"), [
    ("1.0.0", "{nope"), ("1.0.0", '{"topic":"t","event":"e"}'), ("1.0.0", "[1,2,3,4,5]"),
    ("2.0.0", '{"topic":"t","event":"e","payload":{},"ref":null}'), ("2.0.0", '[null,null,1,"e",{}]'),
    ("1.0.0", '{"topic":"t","event":"e","payload":{},"ref":5}'),
])
def test_malformed_text_frames(vsn: str, text: str) -> None:
    with pytest.raises(frames.FrameError):
        frames.decode_text(vsn, text)


def test_binary_user_broadcast_push() -> None:
    body = b'{"id":2}'
    frame = bytes([3, 1, 1, 10, 6, 0, 1]) + b"12realtime:aupdate" + body
    msg = frames.decode_binary(frame)
    assert msg == frames.Frame("realtime:a", "broadcast", {"type": "broadcast", "event": "update",
                                                             "payload": {"id": 2}}, "2", "1")
    raw = frames.decode_binary(bytes([3, 0, 0, 1, 1, 0, 0]) + b"te\x00\xff")
    assert raw.payload["payload"] == b"\x00\xff"
    for bad in (b"\x03\x01", bytes([4, 0, 0, 0, 0, 0, 1]), bytes([3, 0, 0, 9, 0, 0, 1]) + b"t",
                bytes([3, 0, 0, 0, 0, 0, 7]), bytes([3, 0, 0, 0, 0, 0, 1]) + b"{bad"):
        with pytest.raises(frames.FrameError):
            frames.decode_binary(bad)
    out = frames.encode_user_broadcast("realtime:a", "e", b"\x01", {"id": "x"})
    assert out[:5] == bytes([4, 10, 1, 11, 0]) and out.endswith(b'{"id": "x"}\x01')


def test_tokens() -> None:
    token = tokens.mint("authenticated", SECRET, sub="u1")
    claims = tokens.verify(token, SECRET)
    assert claims["role"] == "authenticated" and claims["sub"] == "u1"
    cases = {
        "MalformedJWT": "abc",
        "JwtSignatureError": tokens.mint("anon", SECRET + "x"),
        "InvalidJWTToken": tokens.sign({"role": "anon"}, SECRET),
    }
    for code, bad in cases.items():
        with pytest.raises(tokens.TokenError) as refused:
            tokens.verify(bad, SECRET)
        assert refused.value.code == code
    with pytest.raises(tokens.TokenError, match="Token has expired 10 seconds ago"):
        tokens.verify(tokens.sign({"role": "anon", "exp": 100}, SECRET), SECRET, now=110)
    assert tokens.verify(tokens.sign({"role": "anon", "exp": time.time() + 5}, SECRET), SECRET)
    a_year_ahead = time.time() + 365 * 86400
    with pytest.raises(tokens.TokenError, match="issued in the future") as future:
        tokens.verify(tokens.sign({"role": "anon", "iat": a_year_ahead, "exp": a_year_ahead + 60}, SECRET), SECRET)
    assert future.value.code == "InvalidJWTToken"
    slightly_fast = time.time() + 30  # another host's clock a little ahead: still fine
    assert tokens.verify(tokens.sign({"role": "anon", "iat": slightly_fast, "exp": slightly_fast + 60}, SECRET), SECRET)


def test_filters() -> None:
    assert change_filters.parse(None) is None and change_filters.parse("  ") is None
    qty = change_filters.parse("qty=gte.10")
    assert qty is not None and qty.matches("10.0", "N") and qty.matches("11", "N") and not qty.matches("9.5", "N")
    assert not qty.matches(None, "N")
    text = change_filters.parse("status=in.(open,closed)")
    assert text is not None and text.matches("open", "S") and not text.matches("pending", "S")
    flag = change_filters.parse("active=eq.true")
    assert flag is not None and flag.matches("t", "B") and not flag.matches("f", "B")
    for bad in ("qty", "qty=between.1", "qty=in.1,2", "qty=in.(" + ",".join(map(str, range(101))) + ")"):
        with pytest.raises(change_filters.FilterError):
            change_filters.parse(bad)


def test_binding_ids_are_stable_and_int() -> None:
    params = {"event": "INSERT", "schema": "public", "table": "orders", "filter": "id=eq.1"}
    a, b = Binding.from_params(dict(params)), Binding.from_params(dict(reversed(params.items())))
    assert a.id == b.id and isinstance(a.id, int)
    assert Binding.from_params({"event": "*", "table": "orders"}).covers("public", "orders")
    assert Binding.from_params({"event": "*", "schema": "public"}).covers("public", "anything")
    with pytest.raises(ValueError, match="event must be one of"):
        Binding.from_params({"event": "TRUNCATE"})


def test_values_render_as_realtime_cast_does() -> None:
    types = {23: TypeInfo("int4", "N"), 1007: TypeInfo("_int4", "A", 23), 25: TypeInfo("text", "S"),
             1009: TypeInfo("_text", "A", 25)}
    assert to_json("42", types[23], types) == "42"
    assert to_json("NaN", TypeInfo("float8", "N"), types) == '"NaN"'
    assert to_json("t", TypeInfo("bool", "B"), types) == "true"
    assert to_json('{"a": 1}', TypeInfo("jsonb", "U"), types) == '{"a": 1}'
    assert to_json("2026-11-21 10:00:00.5+00", TypeInfo("timestamptz", "D"), types) == '"2026-11-21T10:00:00.5+00:00"'
    assert to_json("{1,NULL,3}", types[1007], types) == "[1,null,3]"
    assert json.loads(to_json('{"a b","c\\"d",NULL,"NULL"}', types[1009], types)) == ["a b", 'c"d', None, "NULL"]
    assert parse_array("{{1,2},{3,4}}") == [["1", "2"], ["3", "4"]]
    assert parse_array("[0:1]={7,8}") == ["7", "8"] and parse_array("{}") == []
