"""Poison never stops the sync intake, on a stock-config Mosquitto (``max_inflight_messages
20``, ``max_queued_messages 1000``): a flood of deeply nested payloads is dead-lettered
message by message, and the next good message is queued and downloaded."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from linewatch.runtime.config import MqttConfig
from linewatch.runtime.mqtt import MqttClient, MqttMessage
from linewatch_dev.sync_testing import ImageServer, Route, StartSync, image_bytes
from linewatch_dev.testing import STOCK_LIMITS, Mosquitto, private_mosquitto

FLOOD = 1200
DEEP = b'{"urls": ' + b"[" * 20_000 + b"]" * 20_000 + b"}"


@pytest.fixture
def stock_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """Our own Mosquitto with the stock inflight window and queue."""
    with private_mosquitto(tmp_path, STOCK_LIMITS) as broker:
        yield broker


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_flood_of_deep_payloads_is_dead_lettered_one_by_one(
    start_sync: StartSync, image_server: ImageServer, stock_broker: Mosquitto, topic_prefix: str
) -> None:
    url = stock_broker.url
    image_server.routes["/img/1.jpg"] = Route(body=image_bytes(1, 1000))
    dead: list[MqttMessage] = []
    done = asyncio.Event()

    async def on_dead(message: MqttMessage) -> None:
        dead.append(message)
        if len(dead) >= FLOOD:
            done.set()

    async with MqttClient(MqttConfig(url=url), clean_start=True) as pub:
        await pub.subscribe(f"{topic_prefix}/deadletter", on_dead)
        await asyncio.sleep(0.2)
        svc = await start_sync(mqtt=MqttConfig(url=url, client_id=f"sync-{topic_prefix[-10:]}"))
        await pub.publish_many([(f"{topic_prefix}/sync", DEEP, ())] * FLOOD, timeout=120)
        await pub.publish(f"{topic_prefix}/sync", f"{image_server.base_url}/img/1.jpg")
        (job,) = await svc.wait_jobs(1, timeout=60)
        assert job.url.endswith("/img/1.jpg")
        async with asyncio.timeout(60):
            await done.wait()
        assert len(dead) == FLOOD
        assert all(b"nested deeper than 32" in m.payload for m in dead)
