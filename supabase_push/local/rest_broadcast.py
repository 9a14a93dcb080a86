"""Realtime's REST broadcast: ``POST /api/broadcast`` (a batch) and ``POST /api/broadcast/{topic}/events/{event}``
(one message, JSON or binary), with Supabase's key rules, limits and private-topic checks."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from .. import _json
from . import tokens
from .channels import ChannelRegistry
from .database import Database
from .frames import encode_user_broadcast
from .rest import credentials
from .server_config import ServerConfig
from .session import cast_bool

__all__ = ["RestBroadcast"]


class RestBroadcast:
    def __init__(self, config: ServerConfig, db: Database, registry: ChannelRegistry,
                 verify: Callable[[str | None], dict[str, Any]]) -> None:
        self.config = config
        self.db = db
        self.registry = registry
        self.verify = verify

    def _claims(self, request: web.Request) -> dict[str, Any] | None:
        """Claims of the request's Bearer JWT, else of its ``apikey``. As on hosted Supabase an API key
        is no Bearer token, unless it repeats the ``apikey`` header (what supabase-js sends)."""
        apikey, token = credentials(request)
        if token is not None and token.startswith("sb_") and token != apikey:
            return None
        try:
            return self.verify(token or apikey)
        except tokens.TokenError:
            return None

    async def batch(self, request: web.Request) -> web.Response:
        claims = self._claims(request)
        if claims is None:
            return web.json_response({"message": "Unauthorized"}, status=401)
        try:
            body = _json.loads(await request.read())
        except ValueError:
            return web.json_response({"message": "Malformed JSON body"}, status=400)
        messages = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(messages, list):
            return web.json_response({"errors": {"messages": ["can't be blank"]}}, status=422)
        errors = [_validate_rest_message(m) for m in messages]
        if any(errors):
            return web.json_response({"errors": {"messages": errors}}, status=422)
        for message in messages:
            if len(json.dumps(message["payload"])) > self.config.max_payload_bytes:
                return web.json_response({"errors": {"messages": ["Payload size exceeds tenant limit"]}}, status=422)
        allowed: dict[str, bool] = {}  # private topic -> may write; checked once per topic, as Realtime groups them
        for message in messages:
            topic, private = message["topic"], cast_bool(message.get("private"))
            if private and topic not in allowed:
                allowed[topic] = await self.db.can_write(claims, topic)
            if not private or allowed[topic]:  # denied ones are skipped silently; the call still answers 202
                self._publish(topic, message["event"], message["payload"], private, message.get("id"))
        return web.Response(status=202)

    async def single(self, request: web.Request) -> web.Response:
        claims = self._claims(request)
        if claims is None:
            return web.json_response({"message": "Unauthorized"}, status=401)
        content_type = request.headers.get("Content-Type", "application/json").split(";")[0].strip().lower()
        raw = await request.read()
        payload: Any
        if content_type == "application/octet-stream":
            payload = raw
        elif content_type == "application/json":
            try:
                payload = _json.loads(raw) if raw else {}
            except ValueError:
                return web.json_response({"message": "Malformed JSON body"}, status=400)
            if not isinstance(payload, dict):
                payload = {"_json": payload}
        else:
            return web.json_response(
                {"error": "Unsupported Media Type: use application/json or application/octet-stream"}, status=415)
        if len(raw) > self.config.max_payload_bytes:
            return web.json_response({"errors": {"payload": ["Payload size exceeds tenant limit"]}}, status=422)
        private, topic = cast_bool(request.query.get("private")), request.match_info["topic"]
        if not private or await self.db.can_write(claims, topic):  # as on Supabase: denied is skipped, still 202
            self._publish(topic, request.match_info["event"], payload, private)
        return web.Response(status=202)

    def _publish(self, topic: str, event: str, payload: Any, private: bool, message_id: Any = None) -> None:
        stream = (private, topic)
        if isinstance(payload, bytes):
            meta = {"id": str(message_id)} if message_id is not None else None
            self.registry.broadcast_binary(stream, encode_user_broadcast("realtime:" + topic, event, payload, meta))
            return
        body: dict[str, Any] = {"type": "broadcast", "event": event, "payload": payload}
        if message_id is not None:
            body["meta"] = {"id": str(message_id)}
        self.registry.broadcast(stream, body)


def _validate_rest_message(message: Any) -> dict[str, list[str]]:
    if not isinstance(message, dict):
        return {"message": ["is invalid"]}
    errors: dict[str, list[str]] = {}
    for key in ("topic", "event"):
        if not isinstance(message.get(key), str) or not message[key]:
            errors[key] = ["can't be blank"]
    if "payload" not in message:
        errors["payload"] = ["can't be blank"]
    elif not isinstance(message["payload"], dict):
        errors["payload"] = ["is invalid"]
    return errors
