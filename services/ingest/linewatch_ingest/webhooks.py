"""Alarm webhooks: the message formats, their signatures, and delivery.

Formats (``webhook_format``):

- ``generic``: the JSON object of :func:`generic_body`;
- ``feishu`` (Feishu/Lark custom bot): an interactive card; with a secret, signed as the
  bot's docs say: ``sign = base64(hmac_sha256(key=f"{timestamp}\\n{secret}", msg=b""))``
  with ``timestamp`` in seconds, both in the body;
- ``dingtalk`` (DingTalk custom robot): markdown; with a secret, ``timestamp`` (ms) and
  ``sign = urlencode(base64(hmac_sha256(key=secret, msg=f"{timestamp}\\n{secret}")))``
  added to the URL's query;
- ``wecom`` (WeCom group robot): markdown (the key is part of the URL);
- ``slack`` (Slack-compatible incoming webhook, also Mattermost and Rocket.Chat):
  ``text`` plus a coloured attachment.

:class:`WebhookSender` posts through the runtime's :class:`SafeFetcher`, so a webhook URL
cannot reach loopback or plant-network addresses unless ``webhook.allowed_networks``
allows them; calls are rate-limited per rule and retried with exponential backoff. A
chat platform that answers HTTP 200 with an error code (``code``/``errcode`` not 0, or
``ok: false``) counts as failed. URLs and secrets never appear in logs or errors.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import time
import urllib.parse
from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson

from linewatch.runtime.fetch import FetchError, SafeFetcher
from linewatch.runtime.redact import redact_url
from linewatch_ingest.config import AlarmRuleConfig, WebhookConfig
from linewatch_ingest.metrics import WEBHOOKS
from linewatch_ingest.store import AlarmRow

__all__ = [
    "Hook",
    "WebhookSender",
    "dingtalk_sign",
    "feishu_sign",
    "generic_body",
    "render",
]

log = logging.getLogger(__name__)

_TITLES = {
    "alarm.raised": "ALARM",
    "alarm.cleared": "CLEARED",
    "alarm.escalated": "ESCALATED",
}
_COLOURS = {"info": "#439FE0", "warning": "#FFA500", "critical": "#D00000"}
_FEISHU_TEMPLATES = {"info": "blue", "warning": "orange", "critical": "red"}


@dataclass(frozen=True, slots=True)
class Hook:
    """Where and how one call goes."""

    url: str
    format: str = "generic"
    secret: str = ""


def main_hook(rule: AlarmRuleConfig) -> Hook:
    """The rule's webhook."""
    return Hook(rule.webhook_url, rule.webhook_format, rule.webhook_secret)


def escalation_hook(rule: AlarmRuleConfig) -> Hook:
    """Where an escalation goes: its own webhook, else the rule's."""
    if not rule.escalate_webhook_url:
        return main_hook(rule)
    return Hook(
        rule.escalate_webhook_url,
        rule.escalate_webhook_format or rule.webhook_format,
        rule.escalate_webhook_secret,
    )


def feishu_sign(timestamp: int, secret: str) -> str:
    """The Feishu/Lark custom-bot signature of ``timestamp`` (seconds)."""
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


def dingtalk_sign(timestamp_ms: int, secret: str) -> str:
    """The DingTalk robot signature of ``timestamp_ms`` (before URL encoding)."""
    msg = f"{timestamp_ms}\n{secret}".encode()
    return base64.b64encode(hmac.new(secret.encode(), msg, hashlib.sha256).digest()).decode()


def generic_body(event: str, alarm: AlarmRow, alarm_rule: AlarmRuleConfig) -> dict[str, Any]:
    """The generic JSON webhook body."""
    return {
        "event": event,
        "alarm_id": alarm.id,
        "kind": alarm.kind,
        "severity": alarm.severity,
        "rule": alarm.rule,
        "device_id": alarm.device_id,
        "state": alarm.state,
        "count": alarm.count,
        "threshold": alarm_rule.threshold,
        "window_s": alarm_rule.window_s,
        "message": alarm.message,
        "raised_at_ms": alarm.raised_at_ms,
        "cleared_at_ms": alarm.cleared_at_ms,
        "acknowledged": alarm.acked_at_ms is not None,
    }


def _text(event: str, alarm: AlarmRow) -> tuple[str, str]:
    title = f"[linewatch {_TITLES.get(event, event)}] {alarm.severity} {alarm.rule}"
    lines = [alarm.message, f"alarm {alarm.id}, device {alarm.device_id or '-'}"]
    if event == "alarm.escalated":
        lines.append("not acknowledged yet")
    return title, "\n".join(lines)


def render(
    hook: Hook, event: str, alarm: AlarmRow, alarm_rule: AlarmRuleConfig, *, now: float
) -> tuple[str, dict[str, Any]]:
    """The URL to post to and the body, in the hook's format, signed when it has a
    secret."""
    if hook.format == "generic":
        return hook.url, generic_body(event, alarm, alarm_rule)
    title, text = _text(event, alarm)
    if hook.format == "feishu":
        body: dict[str, Any] = {
            "msg_type": "interactive",
            "card": {
                "config": {"wide_screen_mode": True},
                "header": {
                    "template": _FEISHU_TEMPLATES.get(alarm.severity, "orange"),
                    "title": {"tag": "plain_text", "content": title},
                },
                "elements": [{"tag": "div", "text": {"tag": "lark_md", "content": text}}],
            },
        }
        if hook.secret:
            ts = int(now)
            body = {"timestamp": str(ts), "sign": feishu_sign(ts, hook.secret), **body}
        return hook.url, body
    if hook.format == "dingtalk":
        url = hook.url
        if hook.secret:
            ts_ms = int(now * 1000)
            query = urllib.parse.urlencode(
                {"timestamp": ts_ms, "sign": dingtalk_sign(ts_ms, hook.secret)}
            )
            url = f"{url}{'&' if '?' in url else '?'}{query}"
        md = f"### {title}\n\n" + text.replace("\n", "\n\n")
        return url, {"msgtype": "markdown", "markdown": {"title": title, "text": md}}
    if hook.format == "wecom":
        return hook.url, {"msgtype": "markdown", "markdown": {"content": f"**{title}**\n{text}"}}
    # slack-compatible
    colour = _COLOURS.get(alarm.severity, _COLOURS["warning"])
    return hook.url, {
        "text": f"{title}: {alarm.message}",
        "attachments": [{"color": colour, "title": title, "text": text}],
    }


def _accepted(status: int, answer: bytes) -> bool:
    if status >= 300:
        return False
    try:
        payload = orjson.loads(answer) if answer.strip() else None
    except orjson.JSONDecodeError:
        return True  # Slack answers "ok" as text
    if not isinstance(payload, dict):
        return True
    if payload.get("ok") is False:
        return False
    return all(payload.get(name, 0) in (0, "0") for name in ("code", "errcode", "StatusCode"))


class _RateLimit:
    """At most ``per_minute`` calls a minute (a sliding window), waiting for a slot."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._calls: deque[float] = deque()

    async def acquire(self) -> None:
        while True:
            now = time.monotonic()
            while self._calls and now - self._calls[0] >= 60.0:
                self._calls.popleft()
            if len(self._calls) < self.per_minute:
                self._calls.append(now)
                return
            await asyncio.sleep(60.0 - (now - self._calls[0]))


class WebhookSender:
    """Posts alarm webhooks through one :class:`SafeFetcher`."""

    def __init__(self, config: WebhookConfig) -> None:
        self._config = config
        self._limits: dict[str, _RateLimit] = {}
        self._fetcher: SafeFetcher | None = None
        self.last_error = ""

    async def __aenter__(self) -> WebhookSender:
        self._fetcher = SafeFetcher(
            allowed_networks=self._config.allowed_networks,
            connect_timeout_s=self._config.timeout_s,
            read_timeout_s=self._config.timeout_s,
            max_connections=8,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._fetcher is not None:
            await self._fetcher.aclose()

    async def send(
        self, hook: Hook, event: str, alarm: AlarmRow, alarm_rule: AlarmRuleConfig
    ) -> bool:
        """Deliver one call (rate-limited per rule, retried); whether it was accepted."""
        assert self._fetcher is not None, "use WebhookSender as an async context manager"
        limit = self._limits.setdefault(alarm.rule, _RateLimit(self._config.rate_per_minute))
        await limit.acquire()
        shown = redact_url(hook.url)
        delay = self._config.backoff_s
        for attempt in range(1, self._config.max_attempts + 1):
            url, body = render(hook, event, alarm, alarm_rule, now=time.time())
            try:
                status, answer = await self._fetcher.post_json(url, body)
                if _accepted(status, answer):
                    WEBHOOKS.labels("sent").inc()
                    return True
                self.last_error = f"webhook {shown}: HTTP {status}, not accepted"
                if 400 <= status < 500 and status != 429:
                    break  # the request itself is wrong: retrying will not help
            except FetchError as exc:
                self.last_error = f"webhook {shown}: {exc}"
                if not exc.retryable and exc.reason == "refused":
                    break
            WEBHOOKS.labels("retry").inc()
            if attempt < self._config.max_attempts:
                await asyncio.sleep(delay)
                delay *= 2
        WEBHOOKS.labels("failed").inc()
        log.warning(
            "webhook gave up", extra={"fields": {"alarm": alarm.id, "error": self.last_error}}
        )
        return False
