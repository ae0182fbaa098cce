"""MQTT intake of the device protocol: ``request``, ``progress`` and ``verify``.

Each message is validated at the edge (a bad one is logged with its reason, counted and
acknowledged: redelivering it would not make it valid). Valid ones go through a bounded
queue to one writer that applies them in batches, one transaction per batch; a message is
acknowledged to the broker only after its batch committed, so a crash loses nothing.
Duplicates and out-of-order messages change nothing (see :mod:`linewatch_ota.statemachine`).

A ``request`` records what the device runs and on which hardware (``ota_devices``); an
active update it must not get (:mod:`linewatch_ota.guard`) is cancelled then instead of
re-sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Annotated, Literal

from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanKind
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from linewatch.runtime.db import Database
from linewatch.runtime.deadletter import dead_letter_body
from linewatch.runtime.errors import Unavailable
from linewatch.runtime.mqtt import MqttClient, MqttMessage
from linewatch.runtime.telemetry import extract_user_properties
from linewatch.v1 import ota_pb2
from linewatch_ota.catalog import Catalog
from linewatch_ota.convert import update_pb
from linewatch_ota.events import EventHub
from linewatch_ota.guard import refusal
from linewatch_ota.metrics import DEVICE_MESSAGES
from linewatch_ota.publisher import MetadataPublisher
from linewatch_ota.rollouts import validate_device_id
from linewatch_ota.scheduler import Scheduler
from linewatch_ota.statemachine import Transition, is_terminal, on_progress, on_verify
from linewatch_ota.store import ACTIVE_STATES, DeviceRow, DeviceUpdateRow, RolloutRow

__all__ = ["DeviceIntake", "InvalidMessage", "parse_message"]

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

MAX_PAYLOAD = 64 * 1024
UpdateId = Annotated[str, Field(min_length=1, max_length=64)]


class _Msg(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class RequestMsg(_Msg):
    """``{"current_version": "1.2.0", "hw": "rev-b"}``."""

    current_version: str = Field(default="", max_length=64)
    hw: str = Field(default="", max_length=64)


class ProgressMsg(_Msg):
    """``{"update_id": "...", "state": "downloading" | "installing", "percent": 42}``."""

    update_id: UpdateId
    state: Literal["downloading", "installing"]
    percent: int = Field(ge=0, le=100)


class VerifyMsg(_Msg):
    """``{"update_id": "...", "version": "1.3.0", "sha256": "<hex>", "ok": true}``."""

    update_id: UpdateId
    version: str = Field(max_length=64)
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$")
    ok: StrictBool
    #: Why not, when ``ok`` is false (e.g. the manifest signature did not verify).
    error: str = Field(default="", max_length=256)


_MODELS: dict[str, type[_Msg]] = {
    "request": RequestMsg,
    "progress": ProgressMsg,
    "verify": VerifyMsg,
}


class InvalidMessage(ValueError):
    """A device message that does not follow the protocol; the text says why."""


@dataclass(frozen=True, slots=True)
class DeviceMessage:
    """One validated device message."""

    device_id: str
    kind: str
    body: _Msg


def parse_message(topic_root: str, topic: str, payload: bytes) -> DeviceMessage:
    """Validate one message of ``<topic_root>/{device_id}/{request|progress|verify}``.

    Raises:
        InvalidMessage: with the reason.
    """
    prefix = f"{topic_root}/"
    if not topic.startswith(prefix):
        raise InvalidMessage(f"topic {topic!r} is not under {topic_root!r}")
    parts = topic[len(prefix) :].split("/")
    if len(parts) != 2 or parts[1] not in _MODELS:
        raise InvalidMessage(f"topic {topic!r}: expected {topic_root}/<device_id>/<kind>")
    device_id, kind = parts
    try:
        validate_device_id(device_id)
    except Exception as exc:
        raise InvalidMessage(str(exc)) from exc
    if len(payload) > MAX_PAYLOAD:
        raise InvalidMessage(f"{kind}: payload larger than {MAX_PAYLOAD} bytes")
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidMessage(f"{kind}: payload is not JSON") from exc
    if not isinstance(data, dict):
        raise InvalidMessage(f"{kind}: payload must be a JSON object")
    try:
        body = _MODELS[kind].model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "(payload)"
        raise InvalidMessage(f"{kind}: {field}: {err['msg']}") from exc
    return DeviceMessage(device_id=device_id, kind=kind, body=body)


@dataclass(slots=True)
class _Item:
    message: DeviceMessage
    done: asyncio.Future[None]
    span: Span


class DeviceIntake:
    """Subscribes to the device topics and applies what devices report."""

    def __init__(
        self,
        *,
        mqtt: MqttClient,
        db: Database,
        catalog: Catalog,
        publisher: MetadataPublisher,
        events: EventHub,
        scheduler: Scheduler,
        write_lock: asyncio.Lock,
        topic_root: str,
        shared_group: str = "",
        deadletter_topic: str = "",
        batch_max: int = 500,
        queue_size: int = 5000,
    ) -> None:
        self.mqtt = mqtt
        self.deadletter_topic = deadletter_topic
        self.db = db
        self.catalog = catalog
        self.publisher = publisher
        self.events = events
        self.scheduler = scheduler
        self.write_lock = write_lock
        self.topic_root = topic_root
        self.shared_group = shared_group
        self.batch_max = batch_max
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=queue_size)

    async def subscribe(self) -> None:
        """Subscribe to ``<root>/+/request|progress|verify``."""
        share = f"$share/{self.shared_group}/" if self.shared_group else ""
        for kind in _MODELS:
            await self.mqtt.subscribe(f"{share}{self.topic_root}/+/{kind}", self._on_message)

    async def _on_message(self, message: MqttMessage) -> None:
        try:
            parsed = parse_message(self.topic_root, message.topic, message.payload)
        except InvalidMessage as exc:
            kind = message.topic.rsplit("/", 1)[-1]
            DEVICE_MESSAGES.labels(kind if kind in _MODELS else "other", "invalid").inc()
            log.warning(
                "device message rejected",
                extra={"fields": {"topic": message.topic, "reason": str(exc)}},
            )
            if self.deadletter_topic:
                body = dead_letter_body(
                    source="ota", topic=message.topic, payload=message.payload, reason=str(exc)
                )
                # acknowledged only once the dead letter is out (waits across reconnects)
                await self.mqtt.publish(self.deadletter_topic, body, qos=1, timeout=None)
            return
        # the device's trace (its MQTT 5 traceparent) continues through the apply and
        # into the metadata sent back
        span = tracer.start_span(
            f"{message.topic} process",
            context=extract_user_properties(message.user_properties),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "mqtt",
                "messaging.destination.name": message.topic,
                "linewatch.device_id": parsed.device_id,
            },
        )
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        try:
            await self._queue.put(_Item(parsed, done, span))
            await done  # acknowledged only once applied
        except BaseException as exc:
            span.record_exception(exc)
            raise
        finally:
            span.end()

    async def run(self, stop: asyncio.Event) -> None:
        """Apply queued messages in batches until ``stop`` is set."""
        while not stop.is_set():
            try:
                async with asyncio.timeout(0.5):
                    first = await self._queue.get()
            except TimeoutError:
                continue
            batch = [first]
            while len(batch) < self.batch_max and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            if await self._apply_until_done(batch, stop):
                for item in batch:
                    if not item.done.done():
                        item.done.set_result(None)
            else:
                for item in batch:
                    if not item.done.done():
                        item.done.set_exception(Unavailable("OTA service stopping"))
        self._abandon_queued()

    async def _apply_until_done(self, batch: list[_Item], stop: asyncio.Event) -> bool:
        """Apply a batch, retrying with backoff (e.g. while the database is down).

        Failing the messages instead would leave them unacknowledged until the next
        connection (the broker redelivers only then). False when stopped first.
        """
        delay = 0.1
        while True:
            try:
                await self._apply(batch)
                return True
            except Exception:
                log.exception("applying device messages failed; retrying")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await stop.wait()
            if stop.is_set():
                return False
            delay = min(delay * 2, 5.0)

    def _abandon_queued(self) -> None:
        """At shutdown: leave what is still queued unacknowledged (redelivered later)."""
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if not item.done.done():
                item.done.set_exception(Unavailable("OTA service stopping"))

    async def _apply(self, batch: list[_Item]) -> None:
        with tracer.start_as_current_span(
            "ota apply device messages",
            links=[Link(item.span.get_span_context()) for item in batch],
            attributes={"messaging.batch.message_count": len(batch)},
        ):
            await self._apply_traced(batch)

    async def _apply_traced(self, batch: list[_Item]) -> None:
        now = time.time()
        reports = [i.message for i in batch if i.message.kind != "request"]
        booted = sorted({i.message.device_id for i in batch if i.message.kind == "request"})
        # metadata resent for a device's request continues that request's trace
        contexts = {
            i.message.device_id: trace.set_span_in_context(i.span)
            for i in batch
            if i.message.kind == "request"
        }
        requests = {
            i.message.device_id: i.message.body
            for i in batch
            if isinstance(i.message.body, RequestMsg)
        }
        async with self.write_lock, self.db.session() as session:
            changed = await self._apply_reports(session, reports, now)
            devices = await self._record_devices(session, requests, now)
            resend = await self._refresh_booted(session, booted, now)
            refused = await self._refuse(session, resend, devices, now)
            changed += refused
            resend = [row for row in resend if row not in refused]
        for row in changed:
            self.events.publish(ota_pb2.StreamOtaEventsResponse(device_update=update_pb(row)))
        if any(is_terminal(row.state) for row in changed) or len(resend) < len(booted):
            self.scheduler.wake()
        if resend:
            await self.publisher.send(resend, reason="request", contexts=contexts)

    async def _apply_reports(
        self, session: AsyncSession, reports: list[DeviceMessage], now: float
    ) -> list[DeviceUpdateRow]:
        """Apply progress and verify messages in arrival order; returns changed rows."""
        ids = sorted(
            {m.body.update_id for m in reports if isinstance(m.body, ProgressMsg | VerifyMsg)}
        )
        if not ids:
            return []
        result = await session.exec(
            select(DeviceUpdateRow)
            .where(col(DeviceUpdateRow.id).in_(ids))
            .order_by(col(DeviceUpdateRow.id))
            .with_for_update()
        )
        rows = {r.id: r for r in result.all()}
        changed: dict[str, DeviceUpdateRow] = {}
        for msg in reports:
            row = rows.get(getattr(msg.body, "update_id", ""))
            if row is None or row.device_id != msg.device_id:
                DEVICE_MESSAGES.labels(msg.kind, "unknown_update").inc()
                continue
            transition = await self._transition(row, msg)
            if transition is None:
                DEVICE_MESSAGES.labels(msg.kind, "ignored").inc()
                continue
            DEVICE_MESSAGES.labels(msg.kind, "applied").inc()
            row.state = transition.state
            if transition.percent is not None:
                row.percent = transition.percent
            if transition.reason:
                row.reason = transition.reason
            row.deadline = None if is_terminal(row.state) else now + row.timeout_s
            row.updated_at = now
            session.add(row)
            changed[row.id] = row
        return list(changed.values())

    @staticmethod
    async def _record_devices(
        session: AsyncSession, requests: dict[str, RequestMsg], now: float
    ) -> dict[str, DeviceRow]:
        """Remember each device's reported version and hardware."""
        out: dict[str, DeviceRow] = {}
        for device_id in sorted(requests):
            body = requests[device_id]
            row = await session.get(DeviceRow, device_id, with_for_update=True)
            if row is None:
                row = DeviceRow(device_id=device_id, updated_at=now)
            row.current_version = body.current_version
            row.hw = body.hw
            row.updated_at = now
            session.add(row)
            out[device_id] = row
        return out

    async def _refuse(
        self,
        session: AsyncSession,
        active: list[DeviceUpdateRow],
        devices: dict[str, DeviceRow],
        now: float,
    ) -> list[DeviceUpdateRow]:
        """Cancel active updates the device, as it just described itself, must not get."""
        out: list[DeviceUpdateRow] = []
        for row in active:
            rollout = await session.get(RolloutRow, row.rollout_id)
            fw = await self.catalog.get(row.firmware_id)
            held = refusal(
                fw,
                devices.get(row.device_id),
                allow_downgrade=bool(rollout and rollout.allow_downgrade),
            )
            if held is None or held.action != "cancel":
                continue
            row.state = "cancelled"
            row.reason = held.reason
            row.deadline = None
            row.updated_at = now
            session.add(row)
            out.append(row)
        return out

    async def _refresh_booted(
        self, session: AsyncSession, booted: list[str], now: float
    ) -> list[DeviceUpdateRow]:
        """Active updates of devices that sent ``request``: their metadata goes again."""
        if not booted:
            return []
        result = await session.exec(
            select(DeviceUpdateRow)
            .where(
                col(DeviceUpdateRow.device_id).in_(booted),
                col(DeviceUpdateRow.state).in_(ACTIVE_STATES),
            )
            .order_by(col(DeviceUpdateRow.id))
            .with_for_update()
        )
        resend = list(result.all())
        for row in resend:
            row.deadline = now + row.timeout_s
            row.updated_at = now
            session.add(row)
        DEVICE_MESSAGES.labels("request", "applied").inc(len(booted))
        return resend

    async def _transition(self, row: DeviceUpdateRow, msg: DeviceMessage) -> Transition | None:
        body = msg.body
        if isinstance(body, ProgressMsg):
            return on_progress(row.state, row.percent, body.state, body.percent)
        if isinstance(body, VerifyMsg):
            fw = await self.catalog.get(row.firmware_id)
            return on_verify(
                row.state,
                ok=body.ok,
                sha256=body.sha256,
                version=body.version,
                expected_sha256=fw.sha256,
                expected_version=row.version,
                error=body.error,
            )
        return None
