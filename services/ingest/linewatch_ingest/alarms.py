"""Alarms: not-ok verdicts, silent devices and dead letters → webhooks, until cleared.

Three kinds, each per alarm rule (``AlarmRuleConfig``) with its ``severity``:

- ``verdicts``: ``threshold`` not-ok verdicts of a device within ``window_s``; clears
  when the count within the window drops below the threshold;
- ``no_data``: a device seen since ingest started sent nothing for ``no_data_s``; clears
  with its next verdict;
- ``deadletters``: ``deadletter_threshold`` dead letters of the rule within
  ``deadletter_window_s`` (device ``""``); clears like ``verdicts``.

:meth:`AlarmEngine.observe` is called by the pipeline for every verdict; it only updates
in-memory windows (cheap, never blocks) and queues raise/clear events. A background task
records events in the alarm table and queues webhooks (:mod:`linewatch_ingest.webhooks`):
one call when an alarm is raised and one when it clears, and one more, the escalation,
when it is still active and unacknowledged ``escalate_after_s`` after it was raised. The
raise's outcome is recorded as ``delivery`` (``sent``, ``failed``, or ``none`` without a
URL). Windows are swept once a second.

State survives restarts: at start the active alarms are read back and tracked as active
(their window's history is not kept, so they are held for one window after the restart),
then clear as usual: a device that stays OK (or silent) clears its ``verdicts`` alarm one
window after the restart, a silent device's ``no_data`` alarm stays until it sends again,
and escalations not yet sent still go out (once: ``escalated_at_ms`` is recorded before
the call). Acknowledging
(:meth:`AlarmEngine.acknowledge`) records who, when and a note, stops the escalation and
is announced on the alarm stream like every state change.

Other services report alarms too (:meth:`AlarmEngine.raise_reported`, gRPC ``RaiseAlarm``):
the OTA quality gate's ``quality_gate`` alarms. They are stored, streamed, delivered and
escalated like the rest (webhooks of ``IngestConfig.reported_alarms``), raised at most once
per (kind, rule, device), and clear only when their reporter says so (``ClearAlarms``).
"""

from __future__ import annotations

import asyncio
import logging
import time

from linewatch.runtime.fanout import FanOut
from linewatch.v1 import ingest_pb2
from linewatch_ingest.alarm_actions import AlarmActions
from linewatch_ingest.alarm_store import AlarmStore
from linewatch_ingest.alarm_tracks import (
    DEADLETTERS,
    NO_DATA,
    REPORTED_KINDS,
    VERDICTS,
    Delivery,
    Event,
    Key,
    Track,
    message,
)
from linewatch_ingest.config import AlarmRuleConfig, WebhookConfig
from linewatch_ingest.store import AlarmRow, IngestStore, now_ms
from linewatch_ingest.webhooks import (
    WebhookSender,
    escalation_hook,
    feishu_sign,
    generic_body,
    main_hook,
)

__all__ = ["REPORTED_KINDS", "AlarmEngine", "feishu_sign", "generic_body"]

log = logging.getLogger(__name__)


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
        reported: AlarmRuleConfig | None = None,
    ) -> None:
        self._store = store
        self._alarms = AlarmStore(store.db)
        self._actions = actions
        self._config = config
        self._stream = stream
        self._tracks: dict[Key, Track] = {}
        self._rules: dict[str, AlarmRuleConfig] = {}
        self._seen: dict[tuple[str, str], float] = {}
        self._active_ids: dict[Key, int] = {}
        # alarm id → (rule, raised_at_ms) of active alarms not acknowledged or escalated
        self._escalate: dict[int, tuple[str, int]] = {}
        self._restored = False
        self._events: asyncio.Queue[Event] = asyncio.Queue(maxsize=queue_size)
        self._deliveries: asyncio.Queue[Delivery] = asyncio.Queue(maxsize=queue_size)
        self._sender = WebhookSender(config)
        self._last_error = ""
        self._reported = reported or AlarmRuleConfig()
        self._reported_ids: set[int] = set()
        self._report_lock = asyncio.Lock()

    @property
    def last_error(self) -> str:
        """The latest failure (recording, or a webhook's)."""
        return self._last_error or self._sender.last_error

    @last_error.setter
    def last_error(self, value: str) -> None:
        self._last_error = value

    # --- evaluation (synchronous, called by the pipeline) ----------------------------

    def observe(self, rule: str, alarm_rule: AlarmRuleConfig, device_id: str, ok: bool) -> None:
        """Account one verdict of ``device_id`` under ``rule``."""
        self._rules[rule] = alarm_rule
        now = time.monotonic()
        if alarm_rule.no_data_s:
            self._seen[(rule, device_id)] = now
        silent = self._tracks.pop((NO_DATA, rule, device_id), None)
        if silent is not None and silent.active:  # it sent something again
            self._emit(Event("clear", (NO_DATA, rule, device_id), 0, alarm_rule))
        key = (VERDICTS, rule, device_id)
        track = self._tracks.get(key)
        if track is None:
            if ok or alarm_rule.threshold <= 0:
                return
            track = self._tracks[key] = Track(VERDICTS)
        track.alarm_rule = alarm_rule
        if not ok:
            track.times.append(now)
        self._evaluate(key, track, now)

    def observe_dead_letters(self, rule: str, alarm_rule: AlarmRuleConfig, count: int) -> None:
        """Account ``count`` dead letters of ``rule``."""
        self._rules[rule] = alarm_rule
        key = (DEADLETTERS, rule, "")
        track = self._tracks.get(key)
        if track is None:
            if alarm_rule.deadletter_threshold <= 0 or count <= 0:
                return
            track = self._tracks[key] = Track(DEADLETTERS)
        track.alarm_rule = alarm_rule
        now = time.monotonic()
        track.times.extend([now] * count)
        self._evaluate(key, track, now)

    def _evaluate(self, key: Key, track: Track, now: float) -> None:
        alarm_rule = track.alarm_rule or self._rules.get(key[1])
        if alarm_rule is None or track.kind == NO_DATA:
            return  # restored, its rule not seen yet; no-data alarms end with data
        if track.kind == VERDICTS:
            threshold, window = alarm_rule.threshold, alarm_rule.window_s
        else:
            threshold, window = alarm_rule.deadletter_threshold, alarm_rule.deadletter_window_s
        while track.times and now - track.times[0] > window:
            track.times.popleft()
        count = len(track.times)
        held = False
        if track.restored:
            if track.hold_until is None:
                track.hold_until = now + window
            held = now < track.hold_until
        if not track.active and threshold > 0 and count >= threshold:
            track.active = True
            self._emit(Event("raise", key, count, alarm_rule))
        elif track.active and (threshold <= 0 or (count < threshold and not held)):
            track.active = False
            track.restored = False
            self._emit(Event("clear", key, count, alarm_rule))
        if not track.active and not track.times:
            self._tracks.pop(key, None)

    def _check_silence(self, now: float) -> None:
        for (rule, device_id), last in list(self._seen.items()):
            alarm_rule = self._rules.get(rule)
            if alarm_rule is None or not alarm_rule.no_data_s:
                del self._seen[(rule, device_id)]
                continue
            key = (NO_DATA, rule, device_id)
            if now - last >= alarm_rule.no_data_s and key not in self._tracks:
                self._tracks[key] = Track(NO_DATA, active=True, alarm_rule=alarm_rule)
                self._emit(Event("raise", key, int(now - last), alarm_rule))

    def _check_escalations(self) -> None:
        now = now_ms()
        for alarm_id, (rule, raised_at_ms) in list(self._escalate.items()):
            alarm_rule = self._reported if alarm_id in self._reported_ids else self._rules.get(rule)
            if alarm_rule is None or not alarm_rule.escalate_after_s:
                continue
            if now - raised_at_ms < alarm_rule.escalate_after_s * 1000:
                continue
            del self._escalate[alarm_id]
            hook = escalation_hook(alarm_rule)
            if hook.url:
                self._deliver(Delivery("alarm.escalated", alarm_id, hook, alarm_rule))

    def _emit(self, event: Event) -> None:
        try:
            self._events.put_nowait(event)
        except asyncio.QueueFull:
            self.last_error = "alarm event queue full; event dropped"
            log.error(self.last_error, extra={"fields": {"rule": event.key[1]}})

    def forget_rule(self, rule: str) -> None:
        """Stop tracking a deleted rule's devices (their active alarms are cleared)."""
        for key in [k for k in self._tracks if k[1] == rule]:
            track = self._tracks.pop(key)
            if track.active:
                self._emit(Event("clear", key, 0, track.alarm_rule))
        for seen in [k for k in self._seen if k[0] == rule]:
            del self._seen[seen]
        self._rules.pop(rule, None)

    # --- acknowledgement -------------------------------------------------------------

    async def acknowledge(self, alarm_id: int, *, by: str, note: str) -> AlarmRow:
        """Record that ``by`` acknowledged the alarm (no escalation after this).

        Raises:
            NotFound: no such alarm.
            FailedPrecondition: acknowledged before.
        """
        await self._alarms.acknowledge(alarm_id, by=by, note=note)
        self._escalate.pop(alarm_id, None)
        await self._announce(alarm_id)
        return await self._store.get_alarm(alarm_id)

    # --- alarms other services report ------------------------------------------------

    async def raise_reported(
        self, *, kind: str, rule: str, device_id: str, severity: str, message: str, count: int
    ) -> tuple[AlarmRow, bool]:
        """Raise a reported alarm, or return the one of this kind, rule and device raised
        before (in any state; ``False``): a retried report never raises it twice."""
        async with self._report_lock:
            found = await self._alarms.latest(kind=kind, rule=rule, device_id=device_id)
            if found is not None:
                return await self._store.get_alarm(found), False
            alarm_id = await self._alarms.raise_alarm(
                kind=kind,
                rule=rule,
                device_id=device_id,
                severity=severity,
                message=message,
                count=count,
            )
        self._reported_ids.add(alarm_id)
        self._escalate[alarm_id] = (rule, now_ms())
        if not self._reported.webhook_url:
            await self._store.set_alarm_delivery(alarm_id, "none")
        await self._announce(alarm_id)
        hook = main_hook(self._reported)
        self._deliver(Delivery("alarm.raised", alarm_id, hook, self._reported))
        return await self._store.get_alarm(alarm_id), True

    async def clear_reported(self, *, kind: str, rule: str, device_id: str) -> int:
        """Clear the active reported alarms of ``kind`` under ``rule``; how many."""
        async with self._report_lock:
            ids = await self._alarms.active_under(kind=kind, rule=rule, device_id=device_id)
            for alarm_id in ids:
                await self._store.clear_alarm(alarm_id)
        for alarm_id in ids:
            self._escalate.pop(alarm_id, None)
            self._reported_ids.discard(alarm_id)
            await self._announce(alarm_id)
            hook = main_hook(self._reported)
            self._deliver(Delivery("alarm.cleared", alarm_id, hook, self._reported))
        return len(ids)

    # --- background ------------------------------------------------------------------

    async def restore(self) -> None:
        """Track the alarms still active in the database as active (once, at start)."""
        if self._restored:
            return
        self._restored = True
        for row in await self._store.active_alarms():
            key = (row.kind, row.rule, row.device_id)
            alarm_id = int(row.id or 0)
            if row.kind in REPORTED_KINDS:  # cleared by their reporter, not by a window
                self._reported_ids.add(alarm_id)
                if row.acked_at_ms is None and row.escalated_at_ms is None:
                    self._escalate[alarm_id] = (row.rule, row.raised_at_ms)
                continue
            self._active_ids[key] = alarm_id
            track = self._tracks.setdefault(key, Track(row.kind))
            track.active = track.restored = True
            if row.acked_at_ms is None and row.escalated_at_ms is None:
                self._escalate[alarm_id] = (row.rule, row.raised_at_ms)
        if self._active_ids:
            log.info("alarms restored", extra={"fields": {"active": len(self._active_ids)}})

    async def run(self) -> None:
        """Record events, deliver webhooks and sweep windows until cancelled."""
        await self.restore()
        async with self._sender, asyncio.TaskGroup() as tg:
            tg.create_task(self._record_loop())
            tg.create_task(self._deliver_loop())
            tg.create_task(self._sweep_loop())
            if self._actions is not None:
                tg.create_task(self._actions.run())

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for key, track in list(self._tracks.items()):
                self._evaluate(key, track, now)
            self._check_silence(now)
            self._check_escalations()

    async def _record_loop(self) -> None:
        while True:
            event = await self._events.get()
            try:
                await self._record(event)
            except Exception as exc:
                self.last_error = f"alarm record failed: {exc!r}"
                log.exception("alarm record failed")

    async def _record(self, event: Event) -> None:
        key, alarm_rule = event.key, event.alarm_rule
        if event.kind == "raise":
            if key in self._active_ids or alarm_rule is None:
                return
            alarm_id = await self._alarms.raise_alarm(
                kind=key[0],
                rule=key[1],
                device_id=key[2],
                severity=alarm_rule.severity,
                message=message(key, event.count, alarm_rule),
                count=event.count,
            )
            self._active_ids[key] = alarm_id
            self._escalate[alarm_id] = (key[1], now_ms())
            if not alarm_rule.webhook_url:
                await self._store.set_alarm_delivery(alarm_id, "none")
            await self._announce(alarm_id)
            self._deliver(Delivery("alarm.raised", alarm_id, main_hook(alarm_rule), alarm_rule))
            self._act("raise", alarm_id, key, alarm_rule)
        else:
            alarm_id_or_none = self._active_ids.pop(key, None)
            if alarm_id_or_none is None:
                return
            self._escalate.pop(alarm_id_or_none, None)
            await self._store.clear_alarm(alarm_id_or_none)
            await self._announce(alarm_id_or_none)
            if alarm_rule is not None:
                hook = main_hook(alarm_rule)
                self._deliver(Delivery("alarm.cleared", alarm_id_or_none, hook, alarm_rule))
                self._act("clear", alarm_id_or_none, key, alarm_rule)

    def _act(self, kind: str, alarm_id: int, key: Key, alarm_rule: AlarmRuleConfig) -> None:
        if self._actions is not None and key[0] != DEADLETTERS:
            self._actions.submit(kind, alarm_id, key[1], key[2], alarm_rule)

    async def _announce(self, alarm_id: int) -> None:
        if self._stream is not None and self._stream.subscribers:
            from linewatch_ingest.convert import alarm_record

            self._stream.publish(alarm_record(await self._store.get_alarm(alarm_id)))

    def _deliver(self, delivery: Delivery) -> None:
        if not delivery.hook.url:
            return
        try:
            self._deliveries.put_nowait(delivery)
        except asyncio.QueueFull:
            self.last_error = "webhook queue full; delivery skipped"

    async def _deliver_loop(self) -> None:
        while True:
            d = await self._deliveries.get()
            try:
                if d.event == "alarm.escalated":
                    await self._alarms.mark_escalated(d.alarm_id)  # before: never twice
                    await self._announce(d.alarm_id)
                alarm = await self._store.get_alarm(d.alarm_id)
                if d.event == "alarm.escalated" and (
                    alarm.state != "active" or alarm.acked_at_ms is not None
                ):
                    continue
                sent = await self._sender.send(d.hook, d.event, alarm, d.alarm_rule)
                if d.event == "alarm.raised":
                    await self._store.set_alarm_delivery(d.alarm_id, "sent" if sent else "failed")
            except Exception as exc:
                self.last_error = f"webhook failed: {exc!r}"
                log.exception("webhook delivery failed")
