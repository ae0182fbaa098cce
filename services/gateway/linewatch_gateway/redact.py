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


_HOOKS = (
    ("webhook_url", "webhook_secret"),
    ("escalate_webhook_url", "escalate_webhook_secret"),
)
"""The (URL, secret) field pairs of an alarm rule; both are write-only."""


def redact_rule(rule: ingest_pb2.Rule) -> ingest_pb2.Rule:
    """A copy of ``rule`` safe to show to a reader."""
    out = ingest_pb2.Rule()
    out.CopyFrom(rule)
    if out.HasField("alarm"):
        for url_field, secret_field in _HOOKS:
            if getattr(out.alarm, secret_field):
                setattr(out.alarm, secret_field, MASK)
            setattr(out.alarm, url_field, redact_url(getattr(out.alarm, url_field)))
    return out


def keep_secrets(new: ingest_pb2.Rule, stored: ingest_pb2.Rule | None) -> None:
    """Put the stored secrets back where ``new`` carries the placeholders (in place).

    Raises:
        ValueError: ``new`` carries a placeholder but there is nothing stored to keep.
    """
    if not new.HasField("alarm"):
        return
    stored_alarm = stored.alarm if stored is not None and stored.HasField("alarm") else None
    for url_field, secret_field in _HOOKS:
        if getattr(new.alarm, secret_field) == MASK:
            if stored_alarm is None or not getattr(stored_alarm, secret_field):
                raise ValueError(
                    f"alarm.{secret_field}: '***' keeps the stored secret; none is set"
                )
            setattr(new.alarm, secret_field, getattr(stored_alarm, secret_field))
        url = getattr(new.alarm, url_field)
        if is_redacted_url(url):
            if stored_alarm is None or redact_url(getattr(stored_alarm, url_field)) != url:
                raise ValueError(
                    f"alarm.{url_field}: a redacted URL keeps the stored one only when it "
                    "matches it"
                )
            setattr(new.alarm, url_field, getattr(stored_alarm, url_field))
