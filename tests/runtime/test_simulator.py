import asyncio
import json
import math

import numpy as np

from linewatch.runtime.config import MqttConfig
from linewatch.runtime.mqtt import MqttClient, MqttMessage
from linewatch_dev.curves import CURVE_KINDS
from linewatch_dev.simulator import SimulatorConfig, run_simulator, telemetry_payload


def test_payload_follows_the_spec() -> None:
    body = json.loads(
        telemetry_payload("sim-press-a01", "pressure", np.ones(5), line="A", kind="ok", ts_ms=5)
    )
    assert body["device_id"] == "sim-press-a01"
    assert body["point"] == "pressure"
    assert body["ts"] == 5
    assert body["values"] == [1.0] * 5
    assert len(body["msg_id"]) == 32
    assert body["attrs"] == {"line": "A", "sim_kind": "ok"}


async def test_simulator_publishes_realistic_curves(mqtt_url: str, topic_prefix: str) -> None:
    got: list[MqttMessage] = []

    async def handler(message: MqttMessage) -> None:
        got.append(message)

    async with MqttClient(MqttConfig(url=mqtt_url), clean_start=True) as client:
        await client.subscribe(f"{topic_prefix}/+/+/telemetry", handler)
        await asyncio.sleep(0.2)
        config = SimulatorConfig(
            mqtt_url=mqtt_url,
            rate=0,
            count=60,
            defect_rate=0.5,
            topic_root=topic_prefix,
            seed=7,
            quiet=True,
        )
        assert await run_simulator(config) == 60
        for _ in range(100):
            if len(got) >= 60:
                break
            await asyncio.sleep(0.05)
    assert len(got) == 60
    kinds = set()
    for message in got:
        _, line, device, _ = message.topic.split("/")[-4:]
        body = json.loads(message.payload)
        assert body["device_id"] == device
        assert device.startswith("sim-")
        assert body["attrs"]["line"] == line
        assert 200 <= len(body["values"]) <= 400
        assert all(math.isfinite(v) for v in body["values"])
        kinds.add(body["attrs"]["sim_kind"])
    assert "ok" in kinds
    assert len(kinds & set(CURVE_KINDS[1:])) >= 2
