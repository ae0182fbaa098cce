"""Builds the device-commands part of the OTA service (its own MQTT connection)."""

from __future__ import annotations

from dataclasses import dataclass

from linewatch.runtime.db import Database
from linewatch.runtime.mqtt import MqttClient
from linewatch_ota import command_store  # noqa: F401  (registers the tables)
from linewatch_ota.command_store import CommandStore
from linewatch_ota.commands import CommandEvents, DeviceCommands
from linewatch_ota.config import OtaConfig
from linewatch_ota.devices_api import DeviceApi
from linewatch_ota.inventory import Inventory

__all__ = ["DevicesPart", "start_devices"]


@dataclass
class DevicesPart:
    """What ``serve`` runs for device commands."""

    mqtt: MqttClient
    commands: DeviceCommands
    api: DeviceApi

    async def connect(self) -> None:
        """Read the inventory back, subscribe and connect (before the API serves)."""
        await self.commands.inventory.load()
        await self.commands.subscribe()
        await self.mqtt.connect()


def start_devices(config: OtaConfig, db: Database, *, client_id: str) -> DevicesPart:
    """The commands component and its servicer (not yet connected)."""
    mqtt = MqttClient(config.session_mqtt(), client_id=f"{client_id}-devices"[:64])
    store = CommandStore(db)
    inventory = Inventory(store)
    events = CommandEvents()
    commands = DeviceCommands(
        config=config.devices,
        mqtt=mqtt,
        store=store,
        inventory=inventory,
        events=events,
        ota_topic_root=config.topic_root,
        shared_group=config.shared_group,
        deadletter_topic=config.deadletter_topic,
    )
    api = DeviceApi(commands=commands, store=store, inventory=inventory, events=events)
    return DevicesPart(mqtt=mqtt, commands=commands, api=api)
