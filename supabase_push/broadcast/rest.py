"""Supabase Realtime REST broadcast: the per-event endpoint, the batch endpoint for bursts."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import quote

import httpx

from .._http import retry_after
from ..config import api_key_headers, scrub
from ..errors import DeliveryError
from .backends import TransientError
from .message import Message

__all__ = ["RestBackend", "broadcast_endpoint"]

log = logging.getLogger("supabase_push.broadcast")

ACCEPTED = {200, 202, 204}


def broadcast_endpoint(url: str) -> str:
    """``<project>/realtime/v1/api/broadcast`` from a project URL (or one already ending in /realtime/v1)."""
    base = url.rstrip("/")
    for suffix in ("/api/broadcast", "/realtime/v1"):
        base = base.removesuffix(suffix)
    return base + "/realtime/v1/api/broadcast"


class RestBackend:
    """POSTs to Realtime's REST API through one pooled HTTP client.

    One message goes to ``/api/broadcast/{topic}/events/{event}`` (Realtime >= 2.97); several
    go together to ``/api/broadcast``. A 404 from the per-event endpoint means an older
    server: from then on everything uses the batch endpoint.
    """

    name: str = "rest"
    max_payload_bytes: int | None = None
    max_payload_reason: str | None = None

    def __init__(self, url: str, key: str, *, timeout: float = 5.0, max_batch: int = 100,
                 http_client: httpx.AsyncClient | None = None,
                 access_token: Callable[[], Awaitable[str | None]] | None = None) -> None:
        self.endpoint = broadcast_endpoint(url)
        self.max_batch = max_batch
        self.timeout = timeout
        self._key = key
        self._headers = {**api_key_headers(key), "Content-Type": "application/json"}
        self._access_token = access_token  # a signed-in user's JWT, asked for on every request
        self._client = http_client
        self._owns_client = http_client is None
        self._batch_only = False

    def describe(self) -> str:
        return f"Supabase Realtime REST at {self.endpoint}"

    async def connect(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout,
                                             limits=httpx.Limits(max_connections=16, max_keepalive_connections=16))

    async def close(self) -> None:
        if self._client is not None and self._owns_client:
            await self._client.aclose()
        self._client = None

    async def send(self, batch: Sequence[Message]) -> None:
        if len(batch) == 1 and not self._batch_only:
            message = batch[0]
            url = f"{self.endpoint}/{quote(message.topic, safe='')}/events/{quote(message.event, safe='')}"
            response = await self._post(url + ("?private=true" if message.private else ""), message.body)
            if response.status_code != 404:
                return self._check(response, 1)
            self._batch_only = True
            log.info("%s has no per-event endpoint (Realtime older than 2.97): using the batch endpoint",
                     self.endpoint)
        response = await self._post(self.endpoint, _batch_body(batch))
        if response.status_code == 404:
            raise DeliveryError(f"HTTP 404 from {self.endpoint}: no Realtime broadcast API there", status=404,
                                hint="SUPABASE_URL must be the project URL, e.g. https://<ref>.supabase.co")
        self._check(response, len(batch))

    async def _post(self, url: str, body: bytes) -> httpx.Response:
        if self._client is None:
            await self.connect()
        assert self._client is not None
        headers = self._headers
        token = await self._access_token() if self._access_token is not None else None
        if token:
            headers = {**headers, "Authorization": f"Bearer {token}"}
        try:
            return await self._client.post(url, content=body, headers=headers)
        except httpx.TimeoutException:
            raise TransientError(f"no answer from {self.endpoint} within {self.timeout:g} s", timeout=True) from None
        except httpx.TransportError as exc:
            reason = scrub(str(exc) or type(exc).__name__, [self._key])
            raise TransientError(f"cannot reach {self.endpoint}: {reason}") from None

    def _check(self, response: httpx.Response, count: int) -> None:
        status = response.status_code
        if status in ACCEPTED:
            return
        detail = scrub(_server_message(response), [self._key])
        what = f"HTTP {status} from {self.endpoint} for {count} message(s): {detail}"
        if status == 429 or status >= 500:
            raise TransientError(what, status=status, retry_after=retry_after(response.headers.get("retry-after")))
        hint = None
        if status in (401, 403):
            hint = ("check SUPABASE_SERVICE_ROLE_KEY: it must be this project's key "
                    "(private topics need the service role)")
        elif status == 422:
            hint = "the server refused the message: see its reason above (payload size, empty fields)"
        raise DeliveryError(what, status=status, hint=hint)


def _batch_body(batch: Sequence[Message]) -> bytes:
    parts = [b'{"topic":%s,"event":%s,"payload":%s,"private":%s}' % (
        json.dumps(m.topic).encode(), json.dumps(m.event).encode(), m.body, b"true" if m.private else b"false")
        for m in batch]
    return b'{"messages":[' + b",".join(parts) + b"]}"


def _server_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase or "no reason given"
    if isinstance(body, dict):
        for key in ("message", "error", "errors"):
            if key in body:
                return body[key] if isinstance(body[key], str) else json.dumps(body[key])
    return json.dumps(body)[:200]
