"""A two-channel rule scores ``channels`` telemetry end to end (payload → inference → verdict)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from linewatch_inference.app import InferenceServer
from linewatch_inference.config import InferenceConfig
from linewatch_inference.metrics import InferenceMetrics
from linewatch_ingest.app import running
from linewatch_ingest.config import InferenceTarget, OipModel
from linewatch_ingest.payload import BadPayload, parse_telemetry
from prometheus_client import CollectorRegistry

from linewatch.runtime.config import MqttConfig
from linewatch.runtime.mqtt import MqttClient
from linewatch_dev.inference_testing import manifest_dict, two_channel_onnx, write_package
from linewatch_dev.press_cycles import press_cycle
from linewatch_dev.testing import secured_grpc

from .conftest import Collector, Inference, demo_rule, eventually, ingest_config


class TwoChannel(Inference):
    """The real inference service serving a two-channel model (pressure, force)."""

    def __init__(self, data_dir: Path, *, linewatch_api: bool) -> None:
        super().__init__(data_dir)
        self.linewatch_api = linewatch_api

    async def start(self) -> None:
        models = self.data_dir / "models"
        if not models.exists():
            manifest = manifest_dict(name="press2", length=64, labels=["ok", "defect"])
            manifest["channels"] = ["pressure", "force"]
            write_package(models, two_channel_onnx(length=64), manifest)
        config = InferenceConfig(
            grpc=secured_grpc(port=self.port, grace_s=0.2),
            model_dir=models,
            data_dir=self.data_dir,
            max_queue_delay_ms=1.0,
            serve_linewatch_api=self.linewatch_api,
        )
        self.server = InferenceServer(config, metrics=InferenceMetrics(CollectorRegistry()))
        await self.server.start()


@pytest.fixture(params=["linewatch", "oip"])
async def two_channel(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TwoChannel]:
    service = TwoChannel(tmp_path / "inference", linewatch_api=request.param == "linewatch")
    await service.start()
    yield service
    await service.stop()


def _force(rng: np.random.Generator, *, defect: bool) -> list[float]:
    force = press_cycle("ok", rng) / 4
    if defect:
        mid = len(force) // 2
        force[mid - 8 : mid + 8] += 600  # a jam: the force jumps while pressure stays normal
    return [round(float(v), 3) for v in force]


async def test_two_channel_rule_scores_channels_telemetry(
    mqtt_url: str, sqlite_url: str, topic_prefix: str, two_channel: TwoChannel
) -> None:
    p = topic_prefix
    config = ingest_config(
        mqtt_url=mqtt_url,
        database_url=sqlite_url,
        inference=two_channel,
        prefix=p,
        rules=[demo_rule(p, model="press2")],
    )
    target = InferenceTarget(
        target=two_channel.target,
        timeout_s=3.0,
        retry_max_delay_s=0.5,
        models={"press2": OipModel(labels=("ok", "defect"), channels=("pressure", "force"))},
    )
    config = config.model_copy(update={"inference": target})
    rng = np.random.default_rng(5)
    defects = [False, True, False, True, True, False]
    async with (
        running(config) as ingest,
        Collector(mqtt_url, f"{p}/+/+/verdict") as out,
        MqttClient(MqttConfig(url=mqtt_url), clean_start=True) as pub,
    ):

        async def connected() -> bool:
            worker = ingest.controller.worker("demo")
            return worker is not None and worker.client.connected

        assert await eventually(connected, timeout=10)
        for i, defect in enumerate(defects):
            pressure = [round(float(v), 3) for v in press_cycle("ok", rng)]
            channels = {"pressure": pressure, "force": _force(rng, defect=defect)}
            if i % 2:  # any order: the model's manifest decides
                channels = dict(reversed(channels.items()))
            body = {
                "device_id": "press-4",
                "ts": 1763800000000 + i,
                "msg_id": f"c{i}",
                "channels": channels,
            }
            await pub.publish(f"{p}/A/press-4/telemetry", json.dumps(body).encode(), qos=1)
        bad = {"device_id": "press-4", "ts": 1, "msg_id": "bad", "channels": {"force": [1.0, None]}}
        await pub.publish(f"{p}/A/press-4/telemetry", json.dumps(bad).encode(), qos=1)
        verdicts = {v["msg_id"]: v for v in await out.wait_for(len(defects))}
        assert ingest.inference.use_oip == (not two_channel.linewatch_api)
        for i, defect in enumerate(defects):
            v = verdicts[f"c{i}"]
            assert v["model"] == "press2"
            assert v["label"] == ("defect" if defect else "ok")
            assert v["ok"] == (not defect)
            assert v["point"] in ("pressure,force", "force,pressure")
        assert "bad" not in verdicts

        async def dead() -> int:
            return ingest.controller.worker("demo").counters.dead_letters  # type: ignore[union-attr]

        assert await eventually(dead) == 1


@pytest.mark.parametrize(
    ("channels", "reason"),
    [
        ([1, 2], "channels: must be an object of arrays, got list"),
        ({}, "channels: 0 channels, 1..16 allowed"),
        ({f"c{i}": [1.0] for i in range(17)}, "channels: 17 channels, 1..16 allowed"),
        ({"a/b": [1.0]}, "channels: name 'a/b' must be 1..64 letters"),
        ({"force": []}, "channels.force: empty"),
        ({"force": [1.0] * 65_537}, "channels.force: 65537 numbers, at most 65536"),
        ({"force": [1.0, "x"]}, "channels.force: must be a flat array of numbers"),
        ({"force": [1.0, 1e39]}, "channels.force: not a finite number at index 1"),
    ],
)
def test_channels_are_validated_at_the_edge(channels: object, reason: str) -> None:
    body = {"device_id": "d", "ts": 1, "channels": channels}
    with pytest.raises(BadPayload) as err:
        parse_telemetry(json.dumps(body).encode())
    assert err.value.message.startswith(reason)


def test_channels_or_values_not_both() -> None:
    for body in (
        {"device_id": "d", "ts": 1, "values": [1.0], "channels": {"a": [1.0]}},
        {"device_id": "d", "ts": 1, "channels": {"a": [1.0]}, "values": [1.0, 2.0]},
    ):
        with pytest.raises(BadPayload, match="either values or channels"):
            parse_telemetry(json.dumps(body).encode())
    tele = parse_telemetry(
        json.dumps(
            {"device_id": "d", "ts": 1, "point": "cycle", "channels": {"p": [1, 2], "f": [3]}}
        ).encode()
    )
    assert tele.point == "cycle"
    assert tele.channel_names == ("p", "f")
    assert tele.channel_lengths == (2, 1)
    assert tele.values.tolist() == [1.0, 2.0, 3.0]
