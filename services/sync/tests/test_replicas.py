"""Sync replicas splitting the intake on a shared subscription, against a real Mosquitto.

A replaced pod (new host name, so a new client id) leaves its persistent session behind,
and Mosquitto keeps handing that session its share of the shared subscription's messages
until it expires. With ``shared_group`` a replica's sessions expire after
``shared_session_expiry_s`` (not ``mqtt.session_expiry_s``, an hour), so the broker soon
forgets the abandoned session and every URL message reaches a live replica.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from linewatch_sync.config import SyncConfig

from linewatch.runtime.config import MqttConfig
from linewatch.runtime.mqtt import MqttClient, MqttMessage
from linewatch_dev.sync_testing import ImageServer, Route, RunningSync, StartSync, image_bytes
from linewatch_dev.testing import Mosquitto, private_mosquitto

DISCONNECTED = "$SYS/broker/clients/disconnected"
"""Mosquitto's count of persistent sessions whose client is not connected."""
EXPIRY_S = 3
MESSAGES = 30


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """Our own Mosquitto, publishing its ``$SYS`` counters every second."""
    with private_mosquitto(tmp_path, "sys_interval 1\n") as broker:
        yield broker


def test_shared_replicas_announce_the_short_session_expiry() -> None:
    assert SyncConfig().session_mqtt().session_expiry_s == 3600
    shared = SyncConfig(shared_group="linewatch-sync")
    assert shared.session_mqtt().session_expiry_s == 30
    assert shared.session_mqtt().url == shared.mqtt.url
    quick = SyncConfig(shared_group="linewatch-sync", mqtt=MqttConfig(session_expiry_s=5))
    assert quick.session_mqtt().session_expiry_s == 5
    assert SyncConfig(shared_session_expiry_s=5).session_mqtt().session_expiry_s == 3600


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_replaced_replicas_session_stops_taking_its_share(
    start_sync: StartSync, image_server: ImageServer, broker: Mosquitto, topic_prefix: str
) -> None:
    tag = topic_prefix.rsplit("/", 1)[-1]

    async def replica(name: str) -> RunningSync:
        return await start_sync(
            mqtt=MqttConfig(url=broker.url, client_id=f"sync-{tag}-{name}"),
            worker_id=name,
            shared_group="linewatch-sync",
            shared_session_expiry_s=EXPIRY_S,
        )

    disconnected: list[int] = []
    changed = asyncio.Event()

    async def on_sys(message: MqttMessage) -> None:
        disconnected.append(int(message.payload))
        changed.set()

    async def until(done: Callable[[], bool]) -> None:
        while not done():
            changed.clear()
            await changed.wait()

    async with MqttClient(MqttConfig(url=broker.url), clean_start=True) as probe:
        await probe.subscribe(DISCONNECTED, on_sys)
        old = await replica("old")
        survivor = await replica("survivor")
        await old.shutdown()  # a pod replaced: its session stays on the broker
        await replica("new")  # its replacement, under another host name
        async with asyncio.timeout(30):
            await until(lambda: disconnected[-1:] == [1])  # the abandoned session
        async with asyncio.timeout(EXPIRY_S + 30):
            await until(lambda: disconnected[-1:] == [0])  # expired: the broker forgot it

        work_id = f"w-{tag}"
        urls = [f"{image_server.base_url}/img/{i}.jpg" for i in range(MESSAGES)]
        for i in range(MESSAGES):
            image_server.routes[f"/img/{i}.jpg"] = Route(body=image_bytes(i, 500))
        payloads = [json.dumps({"urls": [url], "work_id": work_id}).encode() for url in urls]
        await probe.publish_many(
            [(f"{topic_prefix}/sync", payload, ()) for payload in payloads], timeout=30
        )
        done = await survivor.wait_jobs(MESSAGES, timeout=30)  # none held by the dead session
        assert sorted(job.url for job in done) == sorted(urls)
        assert {job.work_id for job in done} == {work_id}
