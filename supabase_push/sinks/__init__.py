"""Alert forwarding: rules turn changes into alerts for Slack, email and webhooks.

``supabase-push forward --config alerts.toml`` runs it; the file format is in docs/alerts.md.
Delivery is at least once: rate-limited per sink, retried with backoff, and what still fails
goes to a dead-letter file (``--replay-dead-letters`` sends it again).
"""

from __future__ import annotations

from .config_file import ForwardConfig, load_config
from .delivery import DeadLetters, RateLimit, SinkWorker
from .expr import Expression
from .forwarder import Forwarder, dry_run, replay_dead_letters, subscriber_for
from .rules import Alert, Priority, Rule, rules_from
from .targets import EmailSink, Sink, SinkError, SlackSink, WebhookSink

__all__ = ["Alert", "DeadLetters", "EmailSink", "Expression", "ForwardConfig", "Forwarder", "Priority", "RateLimit",
           "Rule", "Sink", "SinkError", "SinkWorker", "SlackSink", "WebhookSink", "dry_run", "load_config",
           "replay_dead_letters", "rules_from", "subscriber_for"]
