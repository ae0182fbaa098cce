"""Secrets in rules are write-only: what reads return instead, and how a write keeps them.

A rule's ``alarm.webhook_secret`` reads as ``"***"`` when set; its ``alarm.webhook_url``
reads as ``scheme://host/***`` when it has a path, query or user info (chat webhooks
carry their token there: ``…/bot/v2/hook/<token>``, ``?access_token=``). A write that
sends these placeholders back keeps the stored values, so a client can read a rule, change
one field and write it back without knowing (or wiping) the secrets.
"""

from __future__ import annotations

from linewatch.runtime.redact import MASK, is_redacted_url, redact_url
from linewatch.v1 import ingest_pb2

__all__ = ["MASK", "is_redacted_url", "keep_secrets", "redact_rule", "redact_url"]


def redact_rule(rule: ingest_pb2.Rule) -> ingest_pb2.Rule:
    """A copy of ``rule`` safe to show to a reader."""
    out = ingest_pb2.Rule()
    out.CopyFrom(rule)
    if out.HasField("alarm"):
        if out.alarm.webhook_secret:
            out.alarm.webhook_secret = MASK
        out.alarm.webhook_url = redact_url(out.alarm.webhook_url)
    return out


def keep_secrets(new: ingest_pb2.Rule, stored: ingest_pb2.Rule | None) -> None:
    """Put the stored secrets back where ``new`` carries the placeholders (in place).

    Raises:
        ValueError: ``new`` carries a placeholder but there is nothing stored to keep.
    """
    if not new.HasField("alarm"):
        return
    stored_alarm = stored.alarm if stored is not None and stored.HasField("alarm") else None
    if new.alarm.webhook_secret == MASK:
        if stored_alarm is None or not stored_alarm.webhook_secret:
            raise ValueError("alarm.webhook_secret: '***' keeps the stored secret; none is set")
        new.alarm.webhook_secret = stored_alarm.webhook_secret
    if is_redacted_url(new.alarm.webhook_url):
        if stored_alarm is None or redact_url(stored_alarm.webhook_url) != new.alarm.webhook_url:
            raise ValueError(
                "alarm.webhook_url: a redacted URL keeps the stored one only when it matches it"
            )
        new.alarm.webhook_url = stored_alarm.webhook_url
