"""Where alerts go: a Slack incoming webhook, email over SMTP, or any webhook. Each says in its
error whether trying again may help; none ever names a secret (a webhook URL is one)."""

from __future__ import annotations

import asyncio
import json
import logging
import smtplib
import ssl
from collections.abc import Mapping, Sequence
from email.message import EmailMessage
from typing import Protocol
from urllib.parse import urlsplit

import httpx

from .._http import retry_after
from ..errors import SupabasePushError
from .rules import Alert, Priority

__all__ = ["EmailSink", "Sink", "SinkError", "SlackSink", "WebhookSink"]


class SinkError(SupabasePushError):
    """A send failed. ``permanent``: retrying cannot help (a 404, a refused address): dead-letter it now.
    ``retry_after``: the seconds the other side asked us to wait."""

    def __init__(self, message: str, *, permanent: bool = False, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after


class Sink(Protocol):
    name: str

    def describe(self) -> str:
        """What it is, with no secret in it."""
        ...

    async def send(self, alert: Alert) -> None:
        """Deliver one alert, or raise SinkError."""
        ...

    async def close(self) -> None: ...


class _HideUrls(logging.Filter):
    """httpx logs every request's URL at INFO; a Slack or signed webhook URL is a secret, so it is
    replaced by the sink's description in any record that carries it."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: dict[str, str] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if self.urls and isinstance(record.args, tuple):
            record.args = tuple(self.urls.get(str(arg), arg) for arg in record.args)
        return True


_hide_urls = _HideUrls()
logging.getLogger("httpx").addFilter(_hide_urls)


class _HttpSink:
    kind = "webhook"

    def __init__(self, name: str, url: str, *, headers: Mapping[str, str] | None = None, timeout: float = 10) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise SupabasePushError(f"sink {name!r}: {parts.scheme or 'that'} is not an http(s) URL")
        self.name = name
        self._url = url
        self._where = f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}"
        _hide_urls.urls[str(httpx.URL(url))] = f"<{self.kind} {name} at {self._where}>"
        self._http = httpx.AsyncClient(headers=dict(headers or {}), timeout=timeout)

    def describe(self) -> str:
        return f"{self.kind} {self.name} at {self._where}"  # the path of a Slack or signed URL is its secret

    async def _post(self, body: dict[str, object], headers: Mapping[str, str] | None = None) -> None:
        try:
            response = await self._http.post(self._url, json=body, headers=dict(headers or {}))
        except httpx.HTTPError as exc:
            raise SinkError(f"{self.describe()}: {type(exc).__name__}") from None
        if response.is_success:
            return
        status = response.status_code
        retry = status in (408, 425, 429) or status >= 500
        raise SinkError(f"{self.describe()} answered {status} {response.reason_phrase}: {response.text[:120]!r}",
                        permanent=not retry, retry_after=retry_after(response.headers.get("retry-after")))

    async def close(self) -> None:
        await self._http.aclose()


class WebhookSink(_HttpSink):
    """POSTs the alert as JSON (key, rule, priority, message, event) with an ``Idempotency-Key`` header:
    the same change and rule always carry the same key, so a receiver can drop a re-send."""

    async def send(self, alert: Alert) -> None:
        await self._post(alert.as_dict(), {"Idempotency-Key": alert.key})


_SLACK_ICONS = {Priority.LOW: ":information_source:", Priority.NORMAL: ":large_blue_circle:",
                Priority.HIGH: ":warning:", Priority.CRITICAL: ":rotating_light:"}


class SlackSink(_HttpSink):
    """A Slack incoming webhook (https://hooks.slack.com/services/...): one message per alert."""

    kind = "slack"

    async def send(self, alert: Alert) -> None:
        event = alert.event
        text = (f"{_SLACK_ICONS[alert.priority]} *{_slack(alert.rule)}* ({alert.priority})\n{_slack(alert.message)}\n"
                f"_{event.op} on {event.schema_name}.{event.table} at {event.commit_ts:%Y-%m-%d %H:%M:%S} UTC, "
                f"cursor {event.cursor}_")
        await self._post({"text": text})


class EmailSink:
    """Email through an SMTP server (STARTTLS or SSL, optional login). The subject carries the priority."""

    def __init__(self, name: str, *, host: str, port: int = 25, sender: str, to: Sequence[str],
                 username: str | None = None, password: str | None = None, starttls: bool = False,
                 ssl_on_connect: bool = False, timeout: float = 10) -> None:
        if not to:
            raise SupabasePushError(f"sink {name!r}: no recipients ('to')")
        self.name = name
        self.host, self.port, self.sender, self.to = host, port, sender, list(to)
        self._username, self._password = username, password
        self.starttls, self.ssl_on_connect, self.timeout = starttls, ssl_on_connect, timeout

    def describe(self) -> str:
        return f"email {self.name} via {self.host}:{self.port}"

    async def send(self, alert: Alert) -> None:
        await asyncio.to_thread(self._send, self.compose(alert))

    def compose(self, alert: Alert) -> EmailMessage:
        event = alert.event
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = ", ".join(self.to)
        # One line: a CR or LF from a templated value would be a header injection (the email package refuses it).
        message["Subject"] = " ".join(f"[{alert.priority.name}] {alert.rule}: {alert.message}".split())[:200]
        message["X-Alert-Key"] = alert.key
        row = event.row
        message.set_content(f"{alert.message}\n\n{event.op} on {event.schema_name}.{event.table}, committed "
                            f"{event.commit_ts.isoformat()}, cursor {event.cursor}\n\n"
                            f"{json.dumps(row, indent=2, default=str)}\n")
        return message

    def _send(self, message: EmailMessage) -> None:
        try:
            smtp_class = smtplib.SMTP_SSL if self.ssl_on_connect else smtplib.SMTP
            with smtp_class(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self._username:
                    smtp.login(self._username, self._password or "")
                smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise SinkError(f"{self.describe()}: recipients refused ({', '.join(map(str, codes))})",
                            permanent=all(code >= 500 for code in codes)) from None
        except smtplib.SMTPResponseException as exc:
            text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
            raise SinkError(f"{self.describe()} answered {exc.smtp_code} {text[:120]}",
                            permanent=exc.smtp_code >= 500) from None
        except (OSError, smtplib.SMTPException) as exc:  # refused, timed out, disconnected
            raise SinkError(f"{self.describe()}: {type(exc).__name__}: {exc}") from None

    async def close(self) -> None:
        pass


def _slack(text: str) -> str:
    """Slack's three control characters escaped: a value like ``<!channel>`` or ``<https://x|y>`` from a row
    is shown as typed, never a mention of everyone or a disguised link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
