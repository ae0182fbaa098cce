"""Simulated devices that answer device commands.

Many devices share one MQTT connection. A device announces itself with a retained
``devices/{id}/status`` ``online`` (``offline`` when it goes away), receives
``devices/{id}/commands`` and answers on the response topic the message names (or the
plain ``devices/{id}/commands/{cmd}/result``) with ``{"ok": true, "result": {...}}``.

Behaviours: ``ok``; ``fail`` (answers ``ok: false``); ``slow`` (answers after
``slow_s``); ``silent`` (never answers); ``offline`` (never says online).

``linewatch devices simulate --devices N`` (dev tooling, not in the images) runs :func:`simulate`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from linewatch.runtime.config import MqttConfig
from linewatch.runtime.mqtt import MqttClient, MqttMessage

__all__ = ["CommandBehaviour", "CommandFleet", "simulate"]

log = logging.getLogger(__name__)


class CommandBehaviour(enum.StrEnum):
    """How a simulated device reacts to a command."""

    OK = "ok"
    FAIL = "fail"
    SLOW = "slow"
    SILENT = "silent"
    OFFLINE = "offline"


@dataclass
class _Device:
    device_id: str
    behaviour: CommandBehaviour
    #: Command ids in the order they arrived (duplicates included).
    received: list[str] = field(default_factory=list)
    received_names: list[str] = field(default_factory=list)


class CommandFleet:
    """Devices on one MQTT connection that answer commands."""

    def __init__(
        self,
        *,
        mqtt_url: str,
        device_ids: list[str],
        topic_root: str = "devices",
        behaviours: Mapping[str, CommandBehaviour] | None = None,
        slow_s: float = 2.0,
        hold: bool = False,
    ) -> None:
        self.topic_root = topic_root
        self.slow_s = slow_s
        #: When set, commands are recorded but answered only on :meth:`release`.
        self.hold = hold
        self._held: list[tuple[_Device, dict[str, object], str]] = []
        self.devices = {
            d: _Device(d, (behaviours or {}).get(d, CommandBehaviour.OK)) for d in device_ids
        }
        self.mqtt = MqttClient(
            MqttConfig(url=mqtt_url), client_id=f"cmd-sim-{uuid.uuid4().hex[:10]}"
        )
        self._tasks: set[asyncio.Task[None]] = set()

    def received(self, device_id: str) -> list[str]:
        return list(self.devices[device_id].received)

    def received_names(self, device_id: str) -> list[str]:
        return list(self.devices[device_id].received_names)

    async def start(self, *, announce: bool = True) -> None:
        await self.mqtt.subscribe(f"{self.topic_root}/+/commands", self._on_command)
        await self.mqtt.connect()
        if announce:
            await self.set_status(
                [d for d, dev in self.devices.items() if dev.behaviour != "offline"], "online"
            )

    async def set_status(self, device_ids: list[str], status: str) -> None:
        """Publish the retained status of these devices ("" clears it)."""
        await self.mqtt.publish_many(
            [(f"{self.topic_root}/{d}/status", status, ()) for d in device_ids],
            qos=1,
            retain=True,
        )

    async def come_online(self, device_ids: list[str]) -> None:
        for d in device_ids:
            if self.devices[d].behaviour == CommandBehaviour.OFFLINE:
                self.devices[d].behaviour = CommandBehaviour.OK
        await self.set_status(device_ids, "online")

    async def stop(self, *, clear: bool = True) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if clear:
            with contextlib.suppress(Exception):
                await self.set_status(list(self.devices), "")
        await self.mqtt.disconnect()

    async def release(self) -> None:
        """Answer the held commands, in arrival order."""
        self.hold = False
        held, self._held = self._held, []
        for dev, body, topic in held:
            await self._answer(dev, body, topic)

    async def _on_command(self, message: MqttMessage) -> None:
        device_id = message.topic.split("/")[-2]
        dev = self.devices.get(device_id)
        if dev is None or dev.behaviour == CommandBehaviour.OFFLINE:
            return
        try:
            body = json.loads(message.payload)
        except ValueError:
            return
        command_id = str(body.get("id", ""))
        dev.received.append(command_id)
        dev.received_names.append(str(body.get("name", "")))
        topic = f"{self.topic_root}/{device_id}/commands/{command_id}/result"
        if dev.behaviour == CommandBehaviour.SILENT:
            return
        if self.hold:
            self._held.append((dev, body, topic))
            return
        if dev.behaviour == CommandBehaviour.SLOW:
            task = asyncio.create_task(self._answer_later(dev, body, topic))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        await self._answer(dev, body, topic)

    async def _answer_later(self, dev: _Device, body: dict[str, object], topic: str) -> None:
        await asyncio.sleep(self.slow_s)
        await self._answer(dev, body, topic)

    async def _answer(self, dev: _Device, body: dict[str, object], topic: str) -> None:
        if dev.behaviour == CommandBehaviour.FAIL:
            answer: dict[str, object] = {"ok": False, "error": f"cannot {body.get('name')}"}
        else:
            answer = {"ok": True, "result": {"name": body.get("name"), "device": dev.device_id}}
        await self.mqtt.publish(topic, json.dumps(answer), qos=1)


async def simulate(
    *, mqtt_url: str, devices: int, fail_share: float = 0.1, slow_share: float = 0.1
) -> None:
    """Run ``devices`` simulated devices until interrupted (``linewatch devices simulate``)."""
    rng = random.Random(19)
    ids = [f"dev-{i:04d}" for i in range(devices)]
    behaviours: dict[str, CommandBehaviour] = {}
    for d in ids:
        r = rng.random()
        if r < fail_share:
            behaviours[d] = CommandBehaviour.FAIL
        elif r < fail_share + slow_share:
            behaviours[d] = CommandBehaviour.SLOW
        elif r < fail_share + slow_share + 0.05:
            behaviours[d] = CommandBehaviour.OFFLINE
    fleet = CommandFleet(mqtt_url=mqtt_url, device_ids=ids, behaviours=behaviours)
    await fleet.start()
    log.info("command devices online", extra={"fields": {"devices": devices}})
    try:
        await asyncio.Event().wait()
    finally:
        with contextlib.suppress(Exception):
            await fleet.set_status(ids, "offline")
        await fleet.stop(clear=False)
