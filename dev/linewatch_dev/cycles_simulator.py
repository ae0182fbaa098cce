"""Machines making parts: one telemetry curve per cycle per device, some of them defective.

Each device publishes a realistic curve (:func:`linewatch_dev.curves.make_curve`) every
``interval_s`` on ``<prefix>/<line>/<device>/telemetry`` with ``attrs.line``, so ingest's
verdicts (the real model) come out ok or not ok. A cycle is defective (a ``spike``) with
the device's not-ok rate; a device listed in ``after_update`` switches to its degraded
rate once the OTA simulator's fleet reports a firmware version other than the one it
started with — "the machine makes worse parts after the update". Devices can be stopped
and started (an idle machine makes no cycles).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Iterable

import numpy as np

from linewatch.runtime.config import MqttConfig
from linewatch.runtime.mqtt import MqttClient
from linewatch_dev.curves import make_curve
from linewatch_dev.ota_simulator import SimulatedFleet

__all__ = ["ProductionCycles"]


class ProductionCycles:
    """Publishes cycles for ``lines`` (device → line) until stopped."""

    def __init__(
        self,
        *,
        mqtt_url: str,
        topic_prefix: str,
        lines: dict[str, str],
        fleet: SimulatedFleet | None = None,
        not_ok_rate: float = 0.0,
        after_update: dict[str, float] | None = None,
        interval_s: float = 0.1,
        seed: int = 0,
        length: int = 256,
    ) -> None:
        self.prefix = topic_prefix
        self.lines = dict(lines)
        self.fleet = fleet
        self.not_ok_rate = not_ok_rate
        self.after_update = dict(after_update or {})
        self.interval_s = interval_s
        self.length = length
        self.rng = np.random.default_rng(seed)
        self.started_version = {d: fleet.version_of(d) for d in lines} if fleet else {}
        self.running: set[str] = set(lines)
        #: device → (cycles published, defective ones).
        self.published: dict[str, list[int]] = {d: [0, 0] for d in lines}
        self.mqtt = MqttClient(
            MqttConfig(url=mqtt_url), client_id=f"lw-cycles-{uuid.uuid4().hex[:10]}"
        )
        self._task: asyncio.Task[None] | None = None

    def rate(self, device_id: str) -> float:
        """The device's not-ok rate now."""
        if (
            self.fleet is not None
            and device_id in self.after_update
            and self.fleet.version_of(device_id) != self.started_version[device_id]
        ):
            return self.after_update[device_id]
        return self.not_ok_rate

    def stop_cycles(self, devices: Iterable[str]) -> None:
        """These machines go idle."""
        self.running -= set(devices)

    def start_cycles(self, devices: Iterable[str]) -> None:
        """These machines make parts again."""
        self.running |= set(devices) & set(self.lines)

    def set_line(self, device_id: str, line: str) -> None:
        """Move a machine to another line (its telemetry carries the new attribute)."""
        self.lines[device_id] = line

    async def start(self) -> None:
        await self.mqtt.connect()
        self._task = asyncio.create_task(self._run(), name="production-cycles")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.mqtt.disconnect()

    async def cycle(self, device_id: str) -> None:
        """Publish one cycle of ``device_id`` now."""
        bad = bool(self.rng.random() < self.rate(device_id))
        values = make_curve("spike" if bad else "ok", length=self.length, rng=self.rng)
        line = self.lines[device_id]
        body = {
            "device_id": device_id,
            "point": "pressure",
            "ts": int(time.time() * 1000),
            "values": [round(float(v), 4) for v in values],
            "msg_id": uuid.uuid4().hex,
            "attrs": {"line": line},
        }
        await self.mqtt.publish(
            f"{self.prefix}/{line}/{device_id}/telemetry", json.dumps(body), qos=1
        )
        self.published[device_id][0] += 1
        self.published[device_id][1] += int(bad)

    async def _run(self) -> None:
        while True:
            started = time.monotonic()
            for device_id in sorted(self.running):
                await self.cycle(device_id)
            await asyncio.sleep(max(0.0, self.interval_s - (time.monotonic() - started)))
