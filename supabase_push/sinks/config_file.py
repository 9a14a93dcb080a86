"""The forwarder's TOML file: sinks, rules, and where dead letters and the cursor live (docs/alerts.md)."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, SupabasePushError
from .delivery import DeadLetters, RateLimit, SinkWorker
from .rules import Priority, Rule, rules_from
from .targets import EmailSink, Sink, SlackSink, WebhookSink

__all__ = ["ForwardConfig", "load_config"]

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_COMMON = {"type", "rate", "min_priority", "attempts", "backoff", "max_backoff", "timeout"}
_KEYS = {"slack": {"url"}, "webhook": {"url", "headers"},
         "email": {"host", "port", "from", "to", "username", "password", "starttls", "ssl"}}


@dataclass
class ForwardConfig:
    rules: list[Rule]
    workers: list[SinkWorker]
    dead_letters: DeadLetters
    cursor_file: Path
    topics: list[str] | None
    """What the forwarder subscribes to (None: the default trading topics)."""


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> ForwardConfig:
    """Read and check the whole file; a ConfigError names the first problem. ``${NAME}`` in any string is
    replaced by that environment variable (keep webhook URLs and passwords out of the file)."""
    file = Path(path)
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no alert config at {file}", hint="see docs/alerts.md for an example") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file} is not valid TOML: {exc}") from None
    data = _substitute(raw, os.environ if env is None else env)
    unknown = set(data) - {"sinks", "rules", "dead_letter", "cursor_file", "topics"}
    if unknown:
        raise ConfigError(f"{file}: unknown key {sorted(unknown)[0]!r}",
                          hint="top-level keys: sinks, rules, dead_letter, cursor_file, topics")
    here = file.resolve().parent
    dead_letters = DeadLetters(here / data.get("dead_letter", f"{file.stem}.dead.jsonl"))
    sinks = data.get("sinks")
    if not isinstance(sinks, dict) or not sinks:
        raise ConfigError(f"{file}: no [sinks.<name>] table", hint="add at least one slack, email or webhook sink")
    workers = [_worker(name, options, dead_letters) for name, options in sinks.items()]
    rules = rules_from(data.get("rules") or [])
    if not rules:
        raise ConfigError(f"{file}: no [[rules]]", hint="a rule says which changes become alerts")
    names = {w.sink.name for w in workers}
    for rule in rules:
        missing = [s for s in rule.sinks if s not in names]
        if missing:
            raise ConfigError(f"rule {rule.name!r} sends to {missing[0]!r}, which is not a sink",
                              hint=f"sinks: {', '.join(sorted(names))}")
    topics = data.get("topics")
    if topics is not None and not (isinstance(topics, list) and all(isinstance(t, str) for t in topics)):
        raise ConfigError(f"{file}: topics must be a list of strings")
    return ForwardConfig(rules, workers, dead_letters, here / data.get("cursor_file", f"{file.stem}.cursor"),
                         topics)


def _worker(name: str, options: Any, dead_letters: DeadLetters) -> SinkWorker:
    if not isinstance(options, dict):
        raise ConfigError(f"sink {name!r} must be a table")
    kind = options.get("type")
    if kind not in _KEYS:
        raise ConfigError(f"sink {name!r}: unknown type {kind!r}", hint="slack, email or webhook")
    unknown = set(options) - _COMMON - _KEYS[kind]
    if unknown:
        raise ConfigError(f"sink {name!r}: unknown key {sorted(unknown)[0]!r}",
                          hint=f"a {kind} sink takes {', '.join(sorted(_COMMON | _KEYS[kind]))}")
    timeout = float(options.get("timeout", 10))
    try:
        sink: Sink
        if kind == "email":
            to = options.get("to")
            sink = EmailSink(name, host=_required(options, "host"), port=int(options.get("port", 25)),
                             sender=_required(options, "from"), to=[to] if isinstance(to, str) else to or [],
                             username=options.get("username"), password=options.get("password"),
                             starttls=bool(options.get("starttls", False)),
                             ssl_on_connect=bool(options.get("ssl", False)), timeout=timeout)
        elif kind == "slack":
            sink = SlackSink(name, _required(options, "url"), timeout=timeout)
        else:
            sink = WebhookSink(name, _required(options, "url"), headers=options.get("headers"), timeout=timeout)
        rate = options.get("rate")
        return SinkWorker(sink, dead_letters, rate=RateLimit.parse(rate) if rate else None,
                          min_priority=Priority.parse(options.get("min_priority", "low")),
                          attempts=int(options.get("attempts", 5)), backoff=float(options.get("backoff", 0.5)),
                          max_backoff=float(options.get("max_backoff", 30)))
    except ConfigError as exc:
        raise ConfigError(f"sink {name!r}: {exc.message}", hint=exc.hint) from None
    except (SupabasePushError, TypeError, ValueError) as exc:
        raise ConfigError(f"sink {name!r}: {exc}") from None


def _required(options: Mapping[str, Any], key: str) -> str:
    value = options.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key} is required (a string)")
    return value


def _substitute(value: Any, env: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        def variable(match: re.Match[str]) -> str:
            if match[1] not in env:
                raise ConfigError(f"the config uses ${{{match[1]}}}, which is not set in the environment")
            return env[match[1]]
        return _VARIABLE.sub(variable, value)
    if isinstance(value, list):
        return [_substitute(v, env) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, env) for k, v in value.items()}
    return value
