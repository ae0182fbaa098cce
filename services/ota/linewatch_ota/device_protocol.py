"""MQTT intake of the device protocol: ``request``, ``progress`` and ``verify``.

Through the runtime's intake (:class:`linewatch.runtime.intake.Intake`): each message is
validated at the edge (a bad one, however malformed, is dead-lettered with its reason,
counted and acknowledged: redelivering it would not make it valid). Valid ones are
applied in batches, one transaction per batch; a message is acknowledged to the broker
only after its batch committed (a failed batch is retried), so a crash loses nothing.
Duplicates and out-of-order messages change nothing (see :mod:`linewatch_ota.statemachine`).

A ``request`` records what the device runs and on which hardware (``ota_devices``); an
active update it must not get (:mod:`linewatch_ota.guard`) is cancelled then instead of
re-sent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanKind
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from linewatch.runtime.config import MqttConfig
from linewatch.runtime.db import Database
from linewatch.runtime.intake import DeadLetter, DeadLetterPolicy, Entry, Intake
from linewatch.runtime.jsonguard import json_depth_error
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
    if (too_deep := json_depth_error(payload)) is not None:
        raise InvalidMessage(f"{kind}: {too_deep}")
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
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


async def _count_invalid(letters: Sequence[DeadLetter]) -> None:
    """Refused device messages are counted by kind (they are logged by the intake)."""
    for letter in letters:
        kind = letter.topic.rsplit("/", 1)[-1]
        DEVICE_MESSAGES.labels(kind if kind in _MODELS else "other", "invalid").inc()


@dataclass(slots=True)
class _Item:
    message: DeviceMessage
    span: Span


class DeviceIntake:
    """Subscribes to the device topics (through the runtime's intake) and applies what
    devices report, one transaction per batch."""

    def __init__(
        self,
        *,
        broker: MqttConfig,
        client_id: str,
        db: Database,
        catalog: Catalog,
        events: EventHub,
        write_lock: asyncio.Lock,
        topic_root: str,
        shared_group: str = "",
        deadletter_topic: str = "",
        batch_max: int = 500,
    ) -> None:
        self.db = db
        self.catalog = catalog
        self.events = events
        self.write_lock = write_lock
        self.topic_root = topic_root
        self.publisher: MetadataPublisher | None = None
        self.scheduler: Scheduler | None = None
        share = f"$share/{shared_group}/" if shared_group else ""
        self.intake: Intake[_Item] = Intake(
            name="ota",
            broker=broker,
            client_id=client_id,
            topic_filters=[f"{share}{topic_root}/+/{kind}" for kind in _MODELS],
            parse=self._parse,
            commit=self._apply,
            dead_letters=DeadLetterPolicy(
                source="ota", topic=deadletter_topic, record=_count_invalid
            ),
            batch_max=batch_max,
            batch_delay_s=0.002,
        )
        self.mqtt: MqttClient = self.intake.client
        """The session metadata is published on."""

    async def start(self) -> None:
        """Subscribe to ``<root>/+/request|progress|verify`` and connect.

        Raises:
            Unavailable: the broker cannot be reached.
        """
        await self.intake.start(wait=True)

    async def stop(self) -> None:
        """Finish the batch in hand; the rest stays unacknowledged (redelivered later)."""
        await self.intake.stop(grace=1.0)

    def _parse(self, message: MqttMessage) -> _Item:
        parsed = parse_message(self.topic_root, message.topic, message.payload)
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
        span.end()
        return _Item(parsed, span)

    async def _apply(self, entries: list[Entry[_Item]]) -> None:
        batch = [e.value for e in entries if e.value is not None]
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
        if self.scheduler is not None and (
            any(is_terminal(row.state) for row in changed) or len(resend) < len(booted)
        ):
            self.scheduler.wake()
        if resend and self.publisher is not None:
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
