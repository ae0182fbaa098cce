"""Alarms: "N not-ok verdicts within M seconds per device" → a webhook, cleared later.

:meth:`AlarmEngine.observe` is called by the pipeline for every verdict; it only updates
in-memory windows (cheap, never blocks) and queues raise/clear events. A background task
records events in the alarm table and delivers webhooks: one call when an alarm is raised
and one when it clears (never more while it stays active), per rule rate-limited, retried
with exponential backoff, the outcome recorded as ``delivery`` (``sent``, ``failed`` or
``none`` without a URL). An alarm clears when its device's not-ok count within the window
drops below the threshold (checked on each verdict and once a second).

Webhook formats: ``generic`` posts a JSON object (see :func:`generic_body`); ``feishu``
posts the Feishu/Lark custom-bot text message, signed with the bot's secret
(``sign = base64(hmac_sha256(key=f"{timestamp}\\n{secret}", msg=b""))``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import httpx

from linewatch.runtime.fanout import FanOut
from linewatch.v1 import ingest_pb2
from linewatch_ingest.alarm_actions import AlarmActions
from linewatch_ingest.config import AlarmRuleConfig, WebhookConfig
from linewatch_ingest.metrics import WEBHOOKS
from linewatch_ingest.store import AlarmRow, IngestStore

__all__ = ["AlarmEngine", "feishu_body", "feishu_sign", "generic_body"]

log = logging.getLogger(__name__)


def feishu_sign(timestamp: int, secret: str) -> str:
    """The Feishu/Lark custom-bot signature of ``timestamp`` (seconds)."""
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


def feishu_body(text: str, secret: str, *, now: float | None = None) -> dict[str, Any]:
    """A Feishu/Lark bot text message, signed when a secret is set."""
    body: dict[str, Any] = {"msg_type": "text", "content": {"text": text}}
    if secret:
        ts = int(now if now is not None else time.time())
        body["timestamp"] = str(ts)
        body["sign"] = feishu_sign(ts, secret)
    return body


def generic_body(event: str, alarm: AlarmRow, alarm_rule: AlarmRuleConfig) -> dict[str, Any]:
    """The generic JSON webhook body."""
    return {
        "event": event,
        "alarm_id": alarm.id,
        "rule": alarm.rule,
        "device_id": alarm.device_id,
        "state": "cleared" if event == "alarm.cleared" else "active",
        "count": alarm.count,
        "threshold": alarm_rule.threshold,
        "window_s": alarm_rule.window_s,
        "message": alarm.message,
        "raised_at_ms": alarm.raised_at_ms,
        "cleared_at_ms": alarm.cleared_at_ms,
    }


@dataclass
class _Track:
    """The not-ok window of one (rule, device)."""

    times: deque[float] = field(default_factory=deque)
    active: bool = False
    alarm_id: int | None = None
    alarm_rule: AlarmRuleConfig = field(default_factory=AlarmRuleConfig)


@dataclass(frozen=True, slots=True)
class _Event:
    kind: str  # "raise" | "clear"
    rule: str
    device_id: str
    count: int
    alarm_rule: AlarmRuleConfig


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


class AlarmEngine:
    """Evaluates alarm rules on verdicts and delivers webhooks in the background."""

    def __init__(
        self,
        store: IngestStore,
        config: WebhookConfig,
        *,
        stream: FanOut[ingest_pb2.AlarmRecord] | None = None,
        queue_size: int = 10_000,
        actions: AlarmActions | None = None,
    ) -> None:
        self._store = store
        self._actions = actions
        self._config = config
        self._stream = stream
        self._tracks: dict[tuple[str, str], _Track] = {}
        self._events: asyncio.Queue[_Event] = asyncio.Queue(maxsize=queue_size)
        self._deliveries: asyncio.Queue[tuple[str, int, AlarmRuleConfig]] = asyncio.Queue(
            maxsize=queue_size
        )
        self._limits: dict[str, _RateLimit] = {}
        self._http: httpx.AsyncClient | None = None
        self.last_error = ""

    # --- evaluation (synchronous, called by the pipeline) ----------------------------

    def observe(self, rule: str, alarm_rule: AlarmRuleConfig, device_id: str, ok: bool) -> None:
        """Account one verdict of ``device_id`` under ``rule``."""
        if alarm_rule.threshold <= 0:
            return
        key = (rule, device_id)
        track = self._tracks.get(key)
        if track is None:
            if ok:
                return
            track = self._tracks[key] = _Track(alarm_rule=alarm_rule)
        track.alarm_rule = alarm_rule
        now = time.monotonic()
        if not ok:
            track.times.append(now)
        self._evaluate(key, track, now)

    def _evaluate(self, key: tuple[str, str], track: _Track, now: float) -> None:
        window = track.alarm_rule.window_s
        while track.times and now - track.times[0] > window:
            track.times.popleft()
        count = len(track.times)
        if not track.active and count >= track.alarm_rule.threshold:
            track.active = True
            self._emit(_Event("raise", key[0], key[1], count, track.alarm_rule))
        elif track.active and count < track.alarm_rule.threshold:
            track.active = False
            self._emit(_Event("clear", key[0], key[1], count, track.alarm_rule))
        if not track.active and not track.times:
            self._tracks.pop(key, None)

    def _emit(self, event: _Event) -> None:
        try:
            self._events.put_nowait(event)
        except asyncio.QueueFull:
            self.last_error = "alarm event queue full; event dropped"
            log.error(self.last_error, extra={"fields": {"rule": event.rule}})

    def forget_rule(self, rule: str) -> None:
        """Stop tracking a deleted rule's devices (their active alarms are cleared)."""
        for key in [k for k in self._tracks if k[0] == rule]:
            track = self._tracks.pop(key)
            if track.active:
                self._emit(_Event("clear", rule, key[1], 0, track.alarm_rule))

    # --- background ------------------------------------------------------------------

    async def run(self) -> None:
        """Record events, deliver webhooks and sweep windows until cancelled."""
        self._http = httpx.AsyncClient(timeout=self._config.timeout_s)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._record_loop())
                tg.create_task(self._deliver_loop())
                tg.create_task(self._sweep_loop())
                if self._actions is not None:
                    tg.create_task(self._actions.run())
        finally:
            await self._http.aclose()

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for key, track in list(self._tracks.items()):
                self._evaluate(key, track, now)

    async def _record_loop(self) -> None:
        # alarm ids of active alarms, by (rule, device)
        active: dict[tuple[str, str], int] = {
            (row.rule, row.device_id): int(row.id or 0) for row in await self._store.active_alarms()
        }
        while True:
            event = await self._events.get()
            key = (event.rule, event.device_id)
            try:
                if event.kind == "raise":
                    if key in active:
                        continue
                    message = (
                        f"{event.device_id}: {event.count} not-ok verdicts within "
                        f"{event.alarm_rule.window_s}s (rule {event.rule})"
                    )
                    alarm_id = await self._store.raise_alarm(
                        rule=event.rule,
                        device_id=event.device_id,
                        message=message,
                        count=event.count,
                    )
                    active[key] = alarm_id
                    if not event.alarm_rule.webhook_url:
                        await self._store.set_alarm_delivery(alarm_id, "none")
                    await self._announce(alarm_id)
                    self._deliver("alarm.raised", alarm_id, event.alarm_rule)
                    self._act("raise", alarm_id, event)
                else:
                    alarm_id_or_none = active.pop(key, None)
                    if alarm_id_or_none is None:
                        continue
                    await self._store.clear_alarm(alarm_id_or_none)
                    await self._announce(alarm_id_or_none)
                    self._deliver("alarm.cleared", alarm_id_or_none, event.alarm_rule)
                    self._act("clear", alarm_id_or_none, event)
            except Exception as exc:
                self.last_error = f"alarm record failed: {exc!r}"
                log.exception("alarm record failed")

    def _act(self, kind: str, alarm_id: int, event: _Event) -> None:
        if self._actions is not None:
            self._actions.submit(kind, alarm_id, event.rule, event.device_id, event.alarm_rule)

    async def _announce(self, alarm_id: int) -> None:
        if self._stream is not None and self._stream.subscribers:
            from linewatch_ingest.convert import alarm_record

            self._stream.publish(alarm_record(await self._store.get_alarm(alarm_id)))

    def _deliver(self, event: str, alarm_id: int, alarm_rule: AlarmRuleConfig) -> None:
        if not alarm_rule.webhook_url:
            return
        try:
            self._deliveries.put_nowait((event, alarm_id, alarm_rule))
        except asyncio.QueueFull:
            self.last_error = "webhook queue full; delivery skipped"

    async def _deliver_loop(self) -> None:
        while True:
            event, alarm_id, alarm_rule = await self._deliveries.get()
            try:
                alarm = await self._store.get_alarm(alarm_id)
                limit = self._limits.setdefault(
                    alarm.rule, _RateLimit(self._config.rate_per_minute)
                )
                await limit.acquire()
                sent = await self._post(event, alarm, alarm_rule)
                if event == "alarm.raised":
                    await self._store.set_alarm_delivery(alarm_id, "sent" if sent else "failed")
            except Exception as exc:
                self.last_error = f"webhook failed: {exc!r}"
                log.exception("webhook delivery failed")

    async def _post(self, event: str, alarm: AlarmRow, alarm_rule: AlarmRuleConfig) -> bool:
        assert self._http is not None
        if alarm_rule.webhook_format == "feishu":
            verb = "CLEARED" if event == "alarm.cleared" else "ALARM"
            body = feishu_body(f"[linewatch {verb}] {alarm.message}", alarm_rule.webhook_secret)
        else:
            body = generic_body(event, alarm, alarm_rule)
        delay = self._config.backoff_s
        for attempt in range(1, self._config.max_attempts + 1):
            try:
                response = await self._http.post(alarm_rule.webhook_url, json=body)
                ok = response.status_code < 300
                if ok and alarm_rule.webhook_format == "feishu":
                    with contextlib.suppress(ValueError):
                        payload = response.json()
                        ok = not (isinstance(payload, dict) and payload.get("code", 0) != 0)
                if ok:
                    WEBHOOKS.labels("sent").inc()
                    return True
                self.last_error = f"webhook {alarm_rule.webhook_url}: HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                self.last_error = f"webhook {alarm_rule.webhook_url}: {exc!r}"
            WEBHOOKS.labels("retry").inc()
            if attempt < self._config.max_attempts:
                await asyncio.sleep(delay)
                delay *= 2
        WEBHOOKS.labels("failed").inc()
        log.warning(
            "webhook gave up", extra={"fields": {"alarm": alarm.id, "error": self.last_error}}
        )
        return False
