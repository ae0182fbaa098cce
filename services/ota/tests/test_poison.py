"""Poison never stops the OTA intake, on a stock-config Mosquitto (``max_inflight_messages
20``, ``max_queued_messages 1000``): a flood of deeply nested payloads is dead-lettered
message by message, and the next good message is applied."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from linewatch_ota.metrics import DEVICE_MESSAGES

from linewatch.runtime.config import MqttConfig
from linewatch.runtime.mqtt import MqttClient, MqttMessage
from linewatch_dev.ota_testing import OtaRunner, until
from linewatch_dev.testing import STOCK_LIMITS, Mosquitto, private_mosquitto

FLOOD = 1200
DEEP = b'{"update_id": ' + b"[" * 20_000 + b"]" * 20_000 + b"}"


@pytest.fixture
def stock_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """Our own Mosquitto with the stock inflight window and queue."""
    with private_mosquitto(tmp_path, STOCK_LIMITS) as broker:
        yield broker


@pytest.fixture
async def stock_ota(
    tmp_path: Path, database_url: str, stock_broker: Mosquitto, topic_prefix: str
) -> AsyncIterator[OtaRunner]:
    runner = OtaRunner(
        tmp_path=tmp_path,
        database_url=database_url,
        mqtt_url=stock_broker.url,
        topic_root=topic_prefix,
    )
    await runner.start()
    try:
        yield runner
    finally:
        await runner.close()


def _applied() -> float:
    return float(DEVICE_MESSAGES.labels("request", "applied")._value.get())


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_flood_of_deep_payloads_is_dead_lettered_one_by_one(
    stock_ota: OtaRunner, stock_broker: Mosquitto, topic_prefix: str
) -> None:
    dead: list[MqttMessage] = []
    done = asyncio.Event()

    async def on_dead(message: MqttMessage) -> None:
        dead.append(message)
        if len(dead) >= FLOOD:
            done.set()

    before = _applied()
    async with MqttClient(MqttConfig(url=stock_broker.url), clean_start=True) as pub:
        await pub.subscribe(f"{topic_prefix}/deadletter", on_dead)
        await asyncio.sleep(0.2)
        topic = f"{topic_prefix}/dev-1/progress"
        await pub.publish_many([(topic, DEEP, ())] * FLOOD, timeout=120)
        await pub.publish(f"{topic_prefix}/dev-2/request", b'{"current_version": "1.0.0"}')

        async def applied() -> bool:
            return _applied() == before + 1

        await until(applied, timeout=60, what="the good request applied")
        async with asyncio.timeout(60):
            await done.wait()
        assert len(dead) == FLOOD
        assert all(b"nested deeper than 32" in m.payload for m in dead)
