"""Alarms that act: a device command when an alarm raises or clears.

An alarm rule may name ``on_raise`` and ``on_clear`` commands; the alarm engine hands
each raise/clear to :class:`AlarmActions`, which sends the command once per event through
the OTA service's ``linewatch.v1.DeviceService`` (to the alarming device, or to the
devices the command lists), honours the rule's cool-down per (rule, device), and records
the command ids with the alarm. Sending happens in the background: a slow or unreachable
OTA service never holds up alarm recording; a failed send is logged, counted and named
in ``last_error``, not retried (the next raise sends again).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass

import grpc
from prometheus_client import Counter

from linewatch.runtime.config import GrpcClientConfig
from linewatch.runtime.grpc_auth import open_channel
from linewatch.v1 import devices_pb2, devices_pb2_grpc
from linewatch_ingest.config import AlarmCommandConfig, AlarmRuleConfig
from linewatch_ingest.store import IngestStore

__all__ = ["AlarmActions"]

log = logging.getLogger(__name__)

ALARM_COMMANDS = Counter(
    "linewatch_ingest_alarm_commands_total",
    "Device commands alarms sent, by event and result",
    ["event", "result"],
)


@dataclass(frozen=True, slots=True)
class _Job:
    event: str  # "raise" | "clear"
    alarm_id: int
    rule: str
    device_id: str
    command: AlarmCommandConfig
    cooldown_s: int


class AlarmActions:
    """Sends alarm commands to the DeviceService at ``target`` (host:port), as the
    caller ``client`` names (ingest's ``grpc.client``: its token, TLS); the OTA service
    must accept that token with the ``ingest`` role (which may call ``SendCommand``)."""

    def __init__(
        self,
        store: IngestStore,
        target: str,
        client: GrpcClientConfig | None = None,
        *,
        timeout_s: float = 5.0,
        queue_size: int = 10_000,
    ) -> None:
        self._store = store
        self._target = target
        self._client = client or GrpcClientConfig()
        self._timeout_s = timeout_s
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=queue_size)
        self._last_sent: dict[tuple[str, str, str], float] = {}
        self._channel: grpc.aio.Channel | None = None
        self.last_error = ""

    def submit(
        self, event: str, alarm_id: int, rule: str, device_id: str, alarm_rule: AlarmRuleConfig
    ) -> None:
        """Queue the command of this raise/clear, if the rule names one (never blocks)."""
        command = alarm_rule.on_raise if event == "raise" else alarm_rule.on_clear
        if command is None:
            return
        job = _Job(event, alarm_id, rule, device_id, command, alarm_rule.command_cooldown_s)
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            self.last_error = "alarm command queue full; command skipped"
            ALARM_COMMANDS.labels(event, "dropped").inc()

    async def run(self) -> None:
        """Send queued commands until cancelled."""
        if not self._target:
            stub = None
        else:
            self._channel = open_channel(self._target, self._client)
            stub = devices_pb2_grpc.DeviceServiceStub(self._channel)
        try:
            while True:
                job = await self._queue.get()
                try:
                    await self._send(stub, job)
                except Exception as exc:
                    self.last_error = f"alarm command failed: {exc!r}"
                    log.exception("alarm command failed")
        finally:
            if self._channel is not None:
                await self._channel.close()

    async def _send(self, stub: devices_pb2_grpc.DeviceServiceStub | None, job: _Job) -> None:
        if stub is None:
            self.last_error = "alarm command not sent: devices_addr is not configured"
            ALARM_COMMANDS.labels(job.event, "not_configured").inc()
            log.warning(self.last_error, extra={"fields": {"rule": job.rule}})
            return
        now = time.monotonic()
        ids: list[str] = []
        for device_id in job.command.devices or (job.device_id,):
            key = (job.rule, device_id, job.event)
            last = self._last_sent.get(key)
            if last is not None and job.cooldown_s and now - last < job.cooldown_s:
                ALARM_COMMANDS.labels(job.event, "cooldown").inc()
                continue
            request = devices_pb2.SendCommandRequest(
                device_id=device_id,
                name=job.command.name,
                params_json=json.dumps(job.command.params, separators=(",", ":")),
                timeout_s=job.command.timeout_s,
                expires_s=job.command.expires_s,
                source=f"alarm:{job.rule}"[:64],
            )
            try:
                reply = await stub.SendCommand(request, timeout=self._timeout_s)
            except grpc.aio.AioRpcError as exc:
                self.last_error = f"alarm command to {device_id}: {exc.code().name} {exc.details()}"
                ALARM_COMMANDS.labels(job.event, "failed").inc()
                log.warning(self.last_error, extra={"fields": {"rule": job.rule}})
                continue
            self._last_sent[key] = now
            ids.append(reply.command.id)
            ALARM_COMMANDS.labels(job.event, "sent").inc()
        if ids:
            await self._store.add_alarm_commands(job.alarm_id, ids)
