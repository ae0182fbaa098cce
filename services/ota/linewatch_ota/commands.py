"""Device commands with acknowledgement, presence from MQTT, the remote-control fan-out.

The component has its own MQTT connection (so its subscriptions never overlap the OTA
intake's). It reads:

- ``devices/{id}/status`` (retained ``online`` / ``offline``, the device's will),
- ``devices/{id}/commands/{cmd}/result`` (the device's answer),
- ``ota/{id}/request`` (firmware version and hardware), and the configured telemetry
  topics (points and attributes), read-only, for presence,
- the ``projector-remote-control`` topic (one command per listed projector).

A command is written ``queued``; the dispatcher claims the oldest queued commands of online
devices (at most ``max_in_flight`` sent per device, in order), marks them ``sent`` in the
database, then publishes ``{"id", "name", "params", "expires_at"}`` on
``devices/{id}/commands`` at QoS 1, with the MQTT 5 response topic
``devices/{id}/commands/{cmd}/result`` and the command id as correlation data. A result is
acknowledged to the broker only after it is committed. Everything a device sends is
outside input: size, JSON depth and types are checked, and a device may only answer its
own commands (the device id in the result topic must be the command's).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from linewatch.runtime.deadletter import dead_letter_body
from linewatch.runtime.errors import InvalidArgument, LinewatchError, Unavailable
from linewatch.runtime.fanout import FanOut
from linewatch.runtime.mqtt import MqttClient, MqttMessage
from linewatch.v1 import devices_pb2
from linewatch_ota.command_store import CommandRow, CommandStore, Outcome
from linewatch_ota.devices_config import DevicesConfig
from linewatch_ota.devices_convert import command_pb
from linewatch_ota.inventory import Inventory
from linewatch_ota.rollouts import validate_device_id

__all__ = [
    "MAX_RESULT_BYTES",
    "CommandEvents",
    "DeviceCommands",
    "InvalidDeviceMessage",
    "command_payload",
    "json_depth",
    "parse_projector",
    "parse_result",
]

log = logging.getLogger(__name__)

MAX_RESULT_BYTES = 64 * 1024
MAX_PARAMS_BYTES = 64 * 1024
MAX_JSON_DEPTH = 16
MAX_PROJECTORS = 10_000

COMMANDS = Counter(
    "linewatch_ota_commands_total", "Device commands by final state (and created)", ["state"]
)
COMMAND_LATENCY = Histogram(
    "linewatch_ota_command_seconds",
    "From a command's creation to the device's answer",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
COMMAND_MESSAGES = Counter(
    "linewatch_ota_command_messages_total",
    "Device messages read by the commands component, by kind and result",
    ["kind", "result"],
)
DEVICES_ONLINE = Gauge("linewatch_ota_devices_online", "Devices online now")
COMMAND_EVENTS_DROPPED = Counter(
    "linewatch_ota_command_events_dropped_total", "Command events a slow subscriber lost"
)


class CommandEvents(FanOut[devices_pb2.StreamCommandEventsResponse]):
    """Command state changes to live subscribers (StreamCommandEvents)."""

    def __init__(self, *, queue_size: int = 10000) -> None:
        super().__init__(buffer=queue_size, on_drop=COMMAND_EVENTS_DROPPED.inc)


class InvalidDeviceMessage(ValueError):
    """A device message that does not follow the protocol; the text says why."""


def json_depth(value: Any) -> int:
    """Nesting depth of a decoded JSON value (iterative: no recursion limit to hit)."""
    depth = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            depth = max(depth, level)
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            depth = max(depth, level)
            stack.extend((v, level + 1) for v in item)
    return depth


def _load_object(payload: bytes, what: str, max_bytes: int) -> dict[str, Any]:
    if len(payload) > max_bytes:
        raise InvalidDeviceMessage(f"{what}: payload larger than {max_bytes} bytes")
    try:
        data = json.loads(payload)
    except RecursionError as exc:
        raise InvalidDeviceMessage(f"{what}: nested deeper than {MAX_JSON_DEPTH}") from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidDeviceMessage(f"{what}: payload is not JSON") from exc
    if not isinstance(data, dict):
        raise InvalidDeviceMessage(f"{what}: payload must be a JSON object")
    if json_depth(data) > MAX_JSON_DEPTH:
        raise InvalidDeviceMessage(f"{what}: nested deeper than {MAX_JSON_DEPTH}")
    return data


class _ResultMsg(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    ok: StrictBool
    result: dict[str, Any] = Field(default_factory=dict)
    error: str = Field(default="", max_length=4096)


class _ProjectorMsg(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    command: str = Field(min_length=1, max_length=128)
    projectors: list[str] = Field(min_length=1, max_length=MAX_PROJECTORS)
    params: dict[str, Any] = Field(default_factory=dict)


def _first_error(exc: ValidationError, what: str) -> InvalidDeviceMessage:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "(payload)"
    return InvalidDeviceMessage(f"{what}: {where}: {err['msg']}")


def parse_result(topic_root: str, topic: str, payload: bytes) -> tuple[str, str, bool, str, str]:
    """``(device_id, command_id, ok, result_json, error)`` of a result message.

    Raises:
        InvalidDeviceMessage: with the reason.
    """
    parts = topic.split("/")
    root = topic_root.split("/")
    n = len(root)
    if (
        len(parts) != n + 4
        or parts[:n] != root
        or parts[n + 1] != "commands"
        or parts[n + 3] != "result"
    ):
        raise InvalidDeviceMessage(
            f"topic {topic!r}: expected {topic_root}/<device>/commands/<id>/result"
        )
    device_id, command_id = parts[n], parts[n + 2]
    try:
        validate_device_id(device_id)
    except InvalidArgument as exc:
        raise InvalidDeviceMessage(str(exc)) from exc
    if not command_id or len(command_id) > 32:
        raise InvalidDeviceMessage(f"topic {topic!r}: bad command id")
    data = _load_object(payload, "result", MAX_RESULT_BYTES)
    try:
        msg = _ResultMsg.model_validate(data)
    except ValidationError as exc:
        raise _first_error(exc, "result") from exc
    if msg.ok:
        return device_id, command_id, True, json.dumps(msg.result, separators=(",", ":")), ""
    return device_id, command_id, False, "", msg.error or "the device reported failure"


def parse_projector(payload: bytes) -> tuple[str, list[str], dict[str, Any]]:
    """``(command, devices, params)`` of a ``projector-remote-control`` message."""
    data = _load_object(payload, "projector-remote-control", MAX_PARAMS_BYTES)
    try:
        msg = _ProjectorMsg.model_validate(data)
    except ValidationError as exc:
        raise _first_error(exc, "projector-remote-control") from exc
    devices: list[str] = []
    for device in msg.projectors:
        try:
            devices.append(validate_device_id(device))
        except InvalidArgument as exc:
            raise InvalidDeviceMessage(f"projector-remote-control: projectors: {exc}") from exc
    return msg.command, list(dict.fromkeys(devices)), msg.params


def command_payload(row: CommandRow) -> bytes:
    """The message a device receives: ``expires_at`` in epoch milliseconds."""
    body = {
        "id": row.id,
        "name": row.name,
        "params": json.loads(row.params_json or "{}"),
        "expires_at": int(row.expires_at * 1000),
    }
    return json.dumps(body, separators=(",", ":")).encode()


@dataclass(slots=True)
class _Pending:
    outcome: Outcome
    done: asyncio.Future[None]


class DeviceCommands:
    """Commands, presence and the projector fan-out over one MQTT connection."""

    def __init__(
        self,
        *,
        config: DevicesConfig,
        mqtt: MqttClient,
        store: CommandStore,
        inventory: Inventory,
        events: CommandEvents,
        ota_topic_root: str,
        shared_group: str = "",
        deadletter_topic: str = "",
        publish_concurrency: int = 16,
    ) -> None:
        self.config = config
        self.mqtt = mqtt
        self.store = store
        self.inventory = inventory
        self.events = events
        self.ota_topic_root = ota_topic_root
        self.shared_group = shared_group
        self.deadletter_topic = deadletter_topic
        self._wake = asyncio.Event()
        self._sem = asyncio.Semaphore(publish_concurrency)
        self._results: asyncio.Queue[_Pending] = asyncio.Queue(maxsize=10_000)
        self._last_sweep = 0.0

    # --- the API side ------------------------------------------------------------------

    async def submit(
        self,
        device_ids: Sequence[str],
        *,
        name: str,
        params: dict[str, Any] | None = None,
        timeout_s: int = 0,
        expires_s: int = 0,
        source: str = "api",
    ) -> list[CommandRow]:
        """Queue one command per device (validated here: this is the API's edge)."""
        if not 1 <= len(name) <= 128:
            raise InvalidArgument("name: 1..128 characters")
        params = params or {}
        params_json = json.dumps(params, separators=(",", ":"))
        if len(params_json) > MAX_PARAMS_BYTES:
            raise InvalidArgument(f"params: larger than {MAX_PARAMS_BYTES} bytes")
        if json_depth(params) > MAX_JSON_DEPTH:
            raise InvalidArgument(f"params: nested deeper than {MAX_JSON_DEPTH}")
        if timeout_s < 0 or timeout_s > 86_400:
            raise InvalidArgument("timeout_s: 0..86400")
        if expires_s < 0 or expires_s > 86_400 * 30:
            raise InvalidArgument("expires_s: 0..2592000")
        for device_id in device_ids:
            validate_device_id(device_id)
        now = time.time()
        rows = [
            CommandRow(
                id=uuid.uuid4().hex,
                device_id=device_id,
                seq=0,
                name=name,
                params_json=params_json,
                state="queued",
                source=source[:64] or "api",
                timeout_s=timeout_s or self.config.default_timeout_s,
                expires_at=now + (expires_s or self.config.default_expires_s),
                created_at=now,
            )
            for device_id in device_ids
        ]
        rows = await self.store.create(rows)
        COMMANDS.labels("created").inc(len(rows))
        self._publish_events(rows)
        self._wake.set()
        return rows

    async def cancel(self, device_id: str, command_id: str) -> CommandRow:
        row = await self.store.cancel(command_id, device_id, time.time())
        COMMANDS.labels("cancelled").inc()
        self._publish_events([row])
        self._wake.set()  # a freed slot lets the next command go
        return row

    def _publish_events(self, rows: Sequence[CommandRow]) -> None:
        for row in rows:
            self.events.publish(devices_pb2.StreamCommandEventsResponse(command=command_pb(row)))

    # --- MQTT intake ---------------------------------------------------------------------

    def _filter(self, topic: str) -> str:
        return f"$share/{self.shared_group}/{topic}" if self.shared_group else topic

    async def subscribe(self) -> None:
        root = self.config.topic_root
        # status is retained: every replica reads it (no shared group)
        await self.mqtt.subscribe(f"{root}/+/status", self._on_status)
        await self.mqtt.subscribe(self._filter(f"{root}/+/commands/+/result"), self._on_result)
        await self.mqtt.subscribe(f"{self.ota_topic_root}/+/request", self._on_ota_request)
        for topic in self.config.telemetry_topics:
            await self.mqtt.subscribe(topic, self._on_telemetry, qos=0)
        if self.config.projector_topic:
            await self.mqtt.subscribe(self._filter(self.config.projector_topic), self._on_projector)

    async def _reject(self, message: MqttMessage, kind: str, reason: str) -> None:
        COMMAND_MESSAGES.labels(kind, "invalid").inc()
        log.warning(
            "device message rejected", extra={"fields": {"topic": message.topic, "reason": reason}}
        )
        if self.deadletter_topic:
            body = dead_letter_body(
                source="ota", topic=message.topic, payload=message.payload, reason=reason
            )
            await self.mqtt.publish(self.deadletter_topic, body, qos=1, timeout=None)

    def _device_of(self, topic: str, root: str) -> str | None:
        prefix = f"{root}/"
        if not topic.startswith(prefix):
            return None
        device_id = topic[len(prefix) :].split("/", 1)[0]
        try:
            return validate_device_id(device_id)
        except InvalidArgument:
            return None

    async def _on_status(self, message: MqttMessage) -> None:
        device_id = self._device_of(message.topic, self.config.topic_root)
        if device_id is not None and not message.payload:
            return  # a retained status cleared
        status = message.payload[:64].decode("utf-8", "replace").strip().strip('"').lower()
        if device_id is None or status not in {"online", "offline"}:
            await self._reject(message, "status", "status: expected online or offline")
            return
        COMMAND_MESSAGES.labels("status", "applied").inc()
        if self.inventory.on_status(device_id, status):
            self._wake.set()

    async def _on_ota_request(self, message: MqttMessage) -> None:
        device_id = self._device_of(message.topic, self.ota_topic_root)
        if device_id is None:
            return  # the OTA intake dead-letters it
        try:
            data = _load_object(message.payload, "request", 64 * 1024)
        except InvalidDeviceMessage:
            return
        version, hw = data.get("current_version"), data.get("hw")
        came = self.inventory.on_traffic(
            device_id,
            firmware_version=version[:64] if isinstance(version, str) else None,
            hardware=hw[:64] if isinstance(hw, str) else None,
        )
        if came:
            self._wake.set()

    async def _on_telemetry(self, message: MqttMessage) -> None:
        # read-only: ingest validates and dead-letters telemetry; here only presence
        if len(message.payload) > 4 * 1024 * 1024:
            return
        try:
            data = json.loads(message.payload)
        except (RecursionError, UnicodeDecodeError, ValueError):
            return
        if not isinstance(data, dict):
            return
        device_id = data.get("device_id")
        if not isinstance(device_id, str):
            return
        try:
            validate_device_id(device_id)
        except InvalidArgument:
            return
        point = data.get("point")
        points: list[str | None] = [point] if isinstance(point, str) else []
        channels = data.get("channels")
        if isinstance(channels, dict):
            points += [k for k in channels if isinstance(k, str)]
        raw_attrs = data.get("attrs")
        attrs = (
            {k: v for k, v in raw_attrs.items() if isinstance(k, str) and isinstance(v, str)}
            if isinstance(raw_attrs, dict)
            else None
        )
        came = False
        for p in points or [None]:
            came |= self.inventory.on_traffic(device_id, point=p, attributes=attrs)
        if came:
            self._wake.set()

    async def _on_projector(self, message: MqttMessage) -> None:
        try:
            name, devices, params = parse_projector(message.payload)
        except InvalidDeviceMessage as exc:
            await self._reject(message, "projector", str(exc))
            return
        await self.submit(devices, name=name, params=params, source="projector-remote-control")
        COMMAND_MESSAGES.labels("projector", "applied").inc()

    async def _on_result(self, message: MqttMessage) -> None:
        try:
            device_id, command_id, ok, result_json, error = parse_result(
                self.config.topic_root, message.topic, message.payload
            )
        except InvalidDeviceMessage as exc:
            await self._reject(message, "result", str(exc))
            return
        if self.inventory.on_traffic(device_id):
            self._wake.set()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._results.put(
            _Pending(Outcome(command_id, device_id, ok, result_json, error), done)
        )
        await done  # acknowledged to the broker only once committed

    # --- the loops -----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Dispatch, sweep, apply results and flush presence until ``stop`` is set.

        The inventory must be loaded first (:meth:`Inventory.load`, before subscribing).
        """
        self._wake.set()  # queued commands of devices already online (after a restart)
        async with asyncio.TaskGroup() as group:
            group.create_task(self._apply_results(stop))
            group.create_task(self._flush_loop(stop))
            await self._dispatch_loop(stop)
        with contextlib.suppress(Exception):
            await self.inventory.flush()

    async def _dispatch_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._wake.clear()
            try:
                await self._tick()
            except Exception:
                log.exception("command dispatch failed; retrying")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.tick_interval_s):
                    waiter = asyncio.ensure_future(self._wake.wait())
                    stopper = asyncio.ensure_future(stop.wait())
                    try:
                        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        waiter.cancel()
                        stopper.cancel()

    async def _tick(self) -> None:
        now = time.time()
        # expiry and timeouts once per tick interval; delivery on every wake
        if now - self._last_sweep >= self.config.tick_interval_s:
            self._last_sweep = now
            swept = await self.store.sweep(now)
            for row in swept:
                COMMANDS.labels(row.state).inc()
            self._publish_events(swept)
        online = self.inventory.online_ids(now)
        DEVICES_ONLINE.set(len(online))
        if not self.mqtt.connected:
            return
        claimed = await self.store.claim(online, self.config.max_in_flight, now)
        if not claimed:
            return
        self._publish_events(claimed)
        failed: list[str] = []
        async with asyncio.TaskGroup() as group:
            for row in claimed:
                await self._sem.acquire()
                group.create_task(self._send(row, failed))
        if failed:
            await self.store.unsend(failed)
            for row in claimed:
                if row.id in failed:
                    row.state = "queued"
            self._publish_events([r for r in claimed if r.id in failed])

    async def _send(self, row: CommandRow, failed: list[str]) -> None:
        root = self.config.topic_root
        try:
            await self.mqtt.publish(
                f"{root}/{row.device_id}/commands",
                command_payload(row),
                qos=1,
                timeout=10.0,
                response_topic=f"{root}/{row.device_id}/commands/{row.id}/result",
                correlation_data=row.id.encode(),
            )
        except (LinewatchError, OverflowError) as exc:
            log.warning(
                "command not sent; queued again",
                extra={"fields": {"device_id": row.device_id, "error": str(exc)}},
            )
            failed.append(row.id)
        finally:
            self._sem.release()

    async def _apply_results(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                async with asyncio.timeout(0.5):
                    first = await self._results.get()
            except TimeoutError:
                continue
            batch = [first]
            while len(batch) < 500 and not self._results.empty():
                batch.append(self._results.get_nowait())
            try:
                changed, ignored = await self.store.finish([p.outcome for p in batch], time.time())
            except Exception as exc:
                log.exception("applying command results failed")
                for p in batch:
                    if not p.done.done():
                        p.done.set_exception(Unavailable(f"result not applied: {exc}"))
                continue
            for p in batch:
                if not p.done.done():
                    p.done.set_result(None)
            COMMAND_MESSAGES.labels("result", "applied").inc(len(changed))
            COMMAND_MESSAGES.labels("result", "ignored").inc(ignored)
            for row in changed:
                COMMANDS.labels(row.state).inc()
                COMMAND_LATENCY.observe(max(0.0, (row.finished_at or 0) - row.created_at))
            self._publish_events(changed)
            if changed:
                self._wake.set()
        while not self._results.empty():
            p = self._results.get_nowait()
            if not p.done.done():
                p.done.set_exception(Unavailable("OTA service stopping"))

    async def _flush_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.flush_interval_s):
                    await stop.wait()
            try:
                await self.inventory.flush()
            except Exception:
                log.exception("writing the device inventory failed; retried")
