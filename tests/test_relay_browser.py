"""examples/relay_positions.html in headless Chromium against `supabase-push relay`, end to end: the tables fill
from a snapshot on load, then live changes, then a relay restart.

Needs Debian's chromium (`bash scripts/test` installs it); Playwright drives it through its own driver and never
downloads a browser.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from http.server import SimpleHTTPRequestHandler
from pathlib import Path

import psycopg
import pytest
from playwright.async_api import Page, async_playwright

from .local_http import QuietHandler, ThreadedHttp
from .postgrest import free_port
from .relay_helpers import ALICE, BOB, SECRET, insert_trades, token

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


@contextlib.contextmanager
def static_site() -> Iterator[str]:
    class Quiet(QuietHandler, SimpleHTTPRequestHandler):
        pass

    with ThreadedHttp(functools.partial(Quiet, directory=str(EXAMPLES))) as server:
        yield server.url


class RelayProcess:
    """`supabase-push relay` as users run it, on a fixed port so it can be killed and started again."""

    def __init__(self, dsn: str, origin: str) -> None:
        self.port = free_port()
        self.args = [sys.executable, "-m", "supabase_push", "relay", "--db-url", dsn, "--port", str(self.port),
                     "--allow-origin", origin, "--json"]
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                     env={**os.environ, "SUPABASE_JWT_SECRET": SECRET})
        assert self.proc.stdout is not None
        json.loads(self.proc.stdout.readline())  # serving

    def kill(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.asynccontextmanager
async def browser_page() -> AsyncIterator[Page]:
    if not os.access(CHROMIUM, os.X_OK):  # a failure that says what to do, not a missing feature skipped
        pytest.fail(f"no Chromium at {CHROMIUM}: `bash scripts/test` installs it (Debian: apt-get install chromium)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield await browser.new_page()
        finally:
            await browser.close()


async def trade_symbols(page: Page) -> list[str]:
    return list(await page.locator("#trades tbody tr td:first-child").all_inner_texts())


async def test_the_page_shows_live_rows_and_catches_up_after_a_relay_restart(installed_url: str) -> None:
    with psycopg.connect(installed_url, autocommit=True) as conn:  # there before the page: from the snapshot
        for owner, symbol in [(ALICE, "SNAP"), (BOB, "BOBP")]:
            conn.execute("INSERT INTO positions (user_id, symbol, quantity, average_price, current_price,"
                         " unrealized_pnl) VALUES (%s, %s, 5, 10, 11, 5)", (owner, symbol))
    with static_site() as site:
        relay = RelayProcess(installed_url, origin=site)
        relay.start()
        try:
            async with browser_page() as page:
                await page.goto(f"{site}/relay_positions.html?relay={relay.url}&token={token(ALICE)}")
                await page.wait_for_function("document.getElementById('status').textContent === 'live'")
                await page.locator("#positions tbody tr", has_text="SNAP").wait_for()

                insert_trades(installed_url, [ALICE], symbol="AAPL")
                insert_trades(installed_url, [BOB], symbol="BOBS")  # someone else's: never on this page
                with psycopg.connect(installed_url, autocommit=True) as conn:
                    conn.execute("INSERT INTO positions (user_id, symbol, quantity, average_price, current_price,"
                                 " unrealized_pnl) VALUES (%s, 'AAPL', 10, 150, 140, -100)", (ALICE,))
                await page.locator("#positions tbody tr", has_text="AAPL").wait_for()
                await page.locator("#trades tbody tr", has_text="AAPL").wait_for()
                assert await page.locator("#positions td.loss").inner_text() == "-100"
                assert await page.locator("#positions tbody tr", has_text="BOBP").count() == 0  # not hers

                relay.kill()
                await page.wait_for_function("document.getElementById('status').textContent === 'reconnecting'")
                insert_trades(installed_url, [ALICE], symbol="MSFT")  # written while the relay is down
                insert_trades(installed_url, [ALICE], symbol="NVDA")
                relay.start()

                await page.locator("#trades tbody tr", has_text="NVDA").wait_for(timeout=20_000)
                await page.wait_for_function("document.getElementById('status').textContent === 'live'")
                assert await trade_symbols(page) == ["NVDA", "MSFT", "AAPL"]  # newest first, each once
        finally:
            relay.kill()
