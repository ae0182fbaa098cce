"""Alarms that act: a raise sends one device command, a clear another (through the real OTA)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from linewatch_ingest.app import running
from linewatch_ingest.config import AlarmCommandConfig, AlarmRuleConfig
from linewatch_ingest.store import Query
from linewatch_ota.devices_config import DevicesConfig

from linewatch.runtime.config import MqttConfig
from linewatch.runtime.mqtt import MqttClient
from linewatch_dev.devices_simulator import CommandFleet
from linewatch_dev.ota_testing import OtaRunner

from .conftest import Inference, curve_payload, demo_rule, eventually, ingest_config


@pytest.fixture
async def ota(tmp_path: Path, mqtt_url: str, topic_prefix: str) -> AsyncIterator[OtaRunner]:
    """The real OTA service (device commands on) with its own SQLite."""
    runner = OtaRunner(
        tmp_path=tmp_path / "ota",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'ota.db'}",
        mqtt_url=mqtt_url,
        topic_root=f"{topic_prefix}/ota",
    )
    runner.config = runner.config.model_copy(
        update={
            "devices": DevicesConfig(
                topic_root=f"{topic_prefix}/devices",
                projector_topic="",
                tick_interval_s=0.1,
            )
        }
    )
    await runner.start()
    try:
        yield runner
    finally:
        await runner.close()


async def test_alarm_sends_a_command_once_per_raise(
    mqtt_url: str, database_url: str, topic_prefix: str, inference: Inference, ota: OtaRunner
) -> None:
    p = topic_prefix
    fleet = CommandFleet(
        mqtt_url=mqtt_url, device_ids=["bad-dev", "plc-1"], topic_root=f"{p}/devices"
    )
    await fleet.start()
    alarm = AlarmRuleConfig(
        threshold=3,
        window_s=2,
        on_raise=AlarmCommandConfig(name="reject_part", params={"bin": 2}),
        on_clear=AlarmCommandConfig(name="resume", devices=("plc-1",)),
    )
    config = ingest_config(
        mqtt_url=mqtt_url,
        database_url=database_url,
        inference=inference,
        prefix=p,
        rules=[demo_rule(p, alarm=alarm)],
        devices_addr=f"127.0.0.1:{ota.grpc_port}",
    )
    try:
        async with (
            running(config) as ingest,
            MqttClient(MqttConfig(url=mqtt_url), clean_start=True) as pub,
        ):
            worker = ingest.controller.worker("demo")
            assert worker is not None
            await worker.client.wait_connected(5)
            await asyncio.sleep(0.2)
            for round_ in range(2):
                # six defects in a row: one raise, however many defects follow
                for i in range(6):
                    await pub.publish(
                        f"{p}/A/bad-dev/telemetry",
                        curve_payload("bad-dev", kind="spike", seed=10 * round_ + i),
                    )

                async def answered(n: int = round_ + 1) -> bool:
                    return (
                        len(fleet.received_names("bad-dev")) == n
                        and len(fleet.received_names("plc-1")) == n
                    )

                # the alarm raises (reject_part to the device), then clears (resume to plc-1)
                assert await eventually(answered, timeout=20)
            assert fleet.received_names("bad-dev") == ["reject_part", "reject_part"]
            assert fleet.received_names("plc-1") == ["resume", "resume"]

            async def recorded() -> bool:
                rows = (await ingest.store.query_alarms(Query())).rows
                return len(rows) == 2 and all(len(r.commands.split(",")) == 2 for r in rows)

            assert await eventually(recorded, timeout=10)
            rows = (await ingest.store.query_alarms(Query())).rows
            sent = {c for r in rows for c in r.commands.split(",")}
            assert sent == set(fleet.received("bad-dev")) | set(fleet.received("plc-1"))
    finally:
        with contextlib.suppress(Exception):
            await fleet.stop()


async def test_cooldown_holds_back_the_next_raise_command(
    mqtt_url: str, database_url: str, topic_prefix: str, inference: Inference, ota: OtaRunner
) -> None:
    p = topic_prefix
    fleet = CommandFleet(mqtt_url=mqtt_url, device_ids=["cool-dev"], topic_root=f"{p}/devices")
    await fleet.start()
    alarm = AlarmRuleConfig(
        threshold=3,
        window_s=1,
        on_raise=AlarmCommandConfig(name="reject_part"),
        command_cooldown_s=3600,
    )
    config = ingest_config(
        mqtt_url=mqtt_url,
        database_url=database_url,
        inference=inference,
        prefix=p,
        rules=[demo_rule(p, alarm=alarm)],
        devices_addr=f"127.0.0.1:{ota.grpc_port}",
    )
    try:
        async with (
            running(config) as ingest,
            MqttClient(MqttConfig(url=mqtt_url), clean_start=True) as pub,
        ):
            worker = ingest.controller.worker("demo")
            assert worker is not None
            await worker.client.wait_connected(5)
            await asyncio.sleep(0.2)
            for round_ in range(2):
                for i in range(4):
                    await pub.publish(
                        f"{p}/A/cool-dev/telemetry",
                        curve_payload("cool-dev", kind="spike", seed=10 * round_ + i),
                    )

                async def raised_and_cleared(n: int = round_ + 1) -> bool:
                    rows = (await ingest.store.query_alarms(Query(state="cleared"))).rows
                    return len(rows) == n

                assert await eventually(raised_and_cleared, timeout=20)

            # two raises, one command: the second fell within the cool-down
            async def first_recorded() -> bool:
                rows = (await ingest.store.query_alarms(Query())).rows
                return any(r.commands for r in rows) and bool(fleet.received("cool-dev"))

            assert await eventually(first_recorded, timeout=10)
            rows = (await ingest.store.query_alarms(Query())).rows
            assert len(rows) == 2
            assert sorted(bool(r.commands) for r in rows) == [False, True]
            assert fleet.received_names("cool-dev") == ["reject_part"]
    finally:
        with contextlib.suppress(Exception):
            await fleet.stop()
