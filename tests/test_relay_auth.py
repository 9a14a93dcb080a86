"""Relay auth with asymmetric keys from a JWKS URL (how newer Supabase projects sign), and the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from supabase_push.relay import Authenticator
from supabase_push.relay.auth import KeySet, Refused

from .local_http import QuietHandler, ThreadedHttp
from .relay_helpers import ALICE, SECRET, SseStream, insert_trades, relay, token

pytestmark = pytest.mark.slow

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def _jwk(key: Any, kid: str, alg: str) -> dict[str, Any]:
    algorithm = jwt.get_algorithm_by_name(alg)
    public: dict[str, Any] = json.loads(algorithm.to_jwk(key.public_key()))
    return {**public, "kid": kid, "alg": alg, "use": "sig"}


JWKS_REQUESTS: list[str] = []


@contextlib.contextmanager
def jwks_server() -> Iterator[str]:
    body = json.dumps({"keys": [_jwk(RSA_KEY, "rsa-1", "RS256"), _jwk(EC_KEY, "ec-1", "ES256")]}).encode()

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            JWKS_REQUESTS.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

    with ThreadedHttp(Handler) as server:
        yield f"{server.url}/auth/v1/.well-known/jwks.json"


def signed(key: Any, kid: str, alg: str, sub: str = ALICE, **claims: Any) -> str:
    body = {"sub": sub, "role": "authenticated", "aud": "authenticated", "exp": int(time.time()) + 600, **claims}
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})


async def test_rs256_and_es256_tokens_from_a_jwks_url(installed_url: str) -> None:
    with jwks_server() as url:
        auth = Authenticator(jwks_url=url, audience="authenticated")
        async with relay(installed_url, authenticator=auth) as server:
            async with SseStream(server.url, signed(RSA_KEY, "rsa-1", "RS256")) as by_rsa, \
                    SseStream(server.url, signed(EC_KEY, "ec-1", "ES256")) as by_ec:
                insert_trades(installed_url, [ALICE])
                assert len(await by_rsa.take(1)) == len(await by_ec.take(1)) == 1
            other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            refusals = {}
            for name, bad in {
                "forged with another key": signed(other, "rsa-1", "RS256"),
                "unknown key id": signed(other, "rsa-9", "RS256"),
                "wrong audience": signed(RSA_KEY, "rsa-1", "RS256", aud="someone-else"),
                "HS256 with the secret": token(ALICE, secret=SECRET),
            }.items():
                async with SseStream(server.url, bad) as stream:
                    refusals[name] = (stream.status, (stream.error or {}).get("error", ""))
            before = len(JWKS_REQUESTS)
            for n in range(20):  # made-up key ids must not make the relay fetch the keys again and again
                async with SseStream(server.url, signed(other, f"made-up-{n}", "RS256")) as stream:
                    assert stream.status == 401
            assert len(JWKS_REQUESTS) - before <= 1
    assert all(status == 401 for status, _ in refusals.values()), refusals
    assert "Signature verification failed" in refusals["forged with another key"][1]
    assert "rsa-9" in refusals["unknown key id"][1]
    assert "audience" in refusals["wrong audience"][1].lower()


async def test_an_unreachable_jwks_url_is_a_503_not_a_crash(installed_url: str) -> None:
    auth = Authenticator(jwks_url="http://127.0.0.1:9/jwks.json")
    async with relay(installed_url, authenticator=auth) as server, \
            SseStream(server.url, signed(RSA_KEY, "rsa-1", "RS256")) as stream:
        pass
    assert stream.status == 503 and "signing keys" in (stream.error or {})["error"]


@pytest.mark.timing
async def test_the_last_good_keys_serve_while_the_jwks_url_is_down(installed_url: str) -> None:
    """Regression: once the cache expired, every token was refused while the URL was down."""
    with jwks_server() as url:
        keys = KeySet(url, lifespan=0.3, min_refresh=0.1, timeout=1)
        auth = Authenticator(key_set=keys)
        assert (await auth.authenticate(signed(RSA_KEY, "rsa-1", "RS256"))).user_id == ALICE
    await asyncio.sleep(0.5)  # past the lifespan, and the URL is gone
    assert (await auth.authenticate(signed(RSA_KEY, "rsa-1", "RS256"))).user_id == ALICE
    await asyncio.sleep(0.2)  # the refresh behind that request has failed by now
    status = keys.status()
    assert status["stale"] and status["keys"] == 2 and status["last_error"] == "ConnectError", status
    assert (await auth.authenticate(signed(EC_KEY, "ec-1", "ES256"))).user_id == ALICE
    with pytest.raises(Refused) as refused:  # a key it never had is still refused
        await auth.authenticate(signed(RSA_KEY, "rsa-9", "RS256"))
    assert refused.value.status == 401


async def test_one_fetch_at_a_time_when_the_jwks_url_hangs() -> None:
    """Regression: concurrent requests waited one after another for a URL that never answers (10 s, 20 s, 30 s)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        keys = KeySet(f"http://127.0.0.1:{silent.getsockname()[1]}/jwks.json", timeout=1)
        auth = Authenticator(key_set=keys)
        started = time.monotonic()
        outcomes = await asyncio.gather(*(auth.authenticate(signed(RSA_KEY, "rsa-1", "RS256")) for _ in range(5)),
                                        return_exceptions=True)
        took = time.monotonic() - started
    assert all(isinstance(o, Refused) and o.status == 503 for o in outcomes), outcomes
    assert keys.fetches == 1 and took < 3, (keys.fetches, took)


def test_the_authenticator_needs_one_key_source() -> None:
    from supabase_push.errors import ConfigError

    with pytest.raises(ConfigError, match="exactly one"):
        Authenticator()
    with pytest.raises(ConfigError, match="exactly one"):
        Authenticator(secret="s", jwks_url="http://x")


def test_cli_relay_serves_and_stops_cleanly(installed_url: str) -> None:
    env = {**os.environ, "SUPABASE_JWT_SECRET": SECRET}
    proc = subprocess.Popen(
        [sys.executable, "-m", "supabase_push", "relay", "--db-url", installed_url, "--port", "0", "--json",
         "--tier", "trade-updates=pro", "--allow-origin", "http://page.test"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        deadline = time.monotonic() + 10  # the relay serves at once; its LISTEN connects alongside
        while (health := httpx.get(f"{info['url']}/healthz")).json()["subscriber"] == "starting" \
                and time.monotonic() < deadline:
            time.sleep(0.02)
        preflight = httpx.options(f"{info['url']}/events", headers={
            "Origin": "http://page.test", "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization,last-event-id"})
        free = httpx.get(f"{info['url']}/events", params={"topics": "trade-updates", "access_token": token(ALICE)})
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert health.status_code == 200 and health.json()["subscriber"] == "push:listen"
    assert preflight.headers["access-control-allow-origin"] == "http://page.test"
    assert free.status_code == 403
    assert proc.returncode == 0, err
    assert installed_url.split("@")[0].split(":")[-1] not in err  # the password never shows


@pytest.mark.parametrize(("args", "needle"), [
    (["--tier", "premium"], "not a tier rule"),
    ([], "exactly one of a JWT secret or a JWKS URL"),
])
def test_cli_relay_bad_configuration_exits_2(installed_url: str, args: list[str], needle: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("SUPABASE_JWT_SECRET", "SUPABASE_JWKS_URL")}
    if args:
        env["SUPABASE_JWT_SECRET"] = SECRET
    proc = subprocess.run([sys.executable, "-m", "supabase_push", "relay", "--db-url", installed_url, "--port", "0",
                           *args], capture_output=True, text=True, env=env, timeout=30)
    assert proc.returncode == 2 and needle in proc.stderr


def test_cli_relay_without_its_extra_says_what_to_install() -> None:
    blocked = ("import sys; sys.modules['starlette'] = None; sys.argv = ['supabase-push', 'relay']; "
               "from supabase_push.cli import main; main()")
    proc = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "SUPABASE_JWT_SECRET": SECRET})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "the relay needs starlette" in proc.stderr and "supabase-push[relay]" in proc.stderr
