"""Ingest scores through plain Open Inference Protocol ``ModelInfer`` (Triton, KServe).

The target is linewatch's own inference server with its linewatch.v1 API switched off,
so it answers like a Triton or KServe endpoint: OIP only, no labels on the wire.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from linewatch_inference.app import InferenceServer
from linewatch_inference.config import InferenceConfig
from linewatch_inference.metrics import InferenceMetrics
from linewatch_ingest.app import running
from linewatch_ingest.config import InferenceTarget, OipModel
from prometheus_client import CollectorRegistry

from linewatch.runtime.config import MqttConfig
from linewatch.runtime.errors import InvalidArgument
from linewatch.runtime.mqtt import MqttClient
from linewatch_dev.curves import CURVE_KINDS
from linewatch_dev.testing import secured_grpc

from .conftest import (
    ROOT,
    Collector,
    Inference,
    curve_payload,
    demo_rule,
    eventually,
    ingest_config,
)


class OipOnly(Inference):
    """The real inference service serving the Open Inference Protocol only."""

    async def start(self) -> None:
        config = InferenceConfig(
            grpc=secured_grpc(port=self.port, grace_s=0.2),
            model_dir=ROOT / "models",
            data_dir=self.data_dir,
            max_queue_delay_ms=1.0,
            serve_linewatch_api=False,
        )
        self.server = InferenceServer(config, metrics=InferenceMetrics(CollectorRegistry()))
        await self.server.start()


@pytest.fixture
async def oip_only(tmp_path: Path) -> AsyncIterator[OipOnly]:
    service = OipOnly(tmp_path / "inference")
    await service.start()
    yield service
    await service.stop()


@pytest.mark.parametrize("protocol", ["auto", "oip"])
async def test_ingest_scores_through_oip_model_infer(
    protocol: str, mqtt_url: str, sqlite_url: str, topic_prefix: str, oip_only: OipOnly
) -> None:
    p = topic_prefix
    config = ingest_config(
        mqtt_url=mqtt_url,
        database_url=sqlite_url,
        inference=oip_only,
        prefix=p,
    )
    target = InferenceTarget(
        target=oip_only.target,
        timeout_s=3.0,
        retry_max_delay_s=0.5,
        protocol=protocol,
        models={"curve-quality": OipModel(labels=CURVE_KINDS)},
    )
    config = config.model_copy(update={"inference": target})
    kinds = ["ok", "spike", "ok", "step", "drift", "noise"]
    async with (
        running(config) as ingest,
        Collector(mqtt_url, f"{p}/+/+/verdict") as out,
        MqttClient(MqttConfig(url=mqtt_url), clean_start=True) as pub,
    ):

        async def connected() -> bool:
            worker = ingest.controller.worker("demo")
            return worker is not None and worker.client.connected

        assert await eventually(connected, timeout=10)
        for i, kind in enumerate(kinds):
            payload = curve_payload("press-1", kind=kind, msg_id=f"m{i}", seed=100 + i)
            await pub.publish(f"{p}/A/press-1/telemetry", payload, qos=1)
        verdicts = {v["msg_id"]: v for v in await out.wait_for(len(kinds))}
        assert ingest.inference.use_oip
        for i, kind in enumerate(kinds):
            v = verdicts[f"m{i}"]
            assert v["model"] == "curve-quality"
            assert v["model_version"] == "1"
            assert set(v["scores"]) == set(CURVE_KINDS)
            assert v["ok"] == (v["label"] == "ok")
            assert v["ok"] == (kind == "ok"), (kind, v["label"])


async def test_a_rule_names_its_own_oip_target(
    mqtt_url: str, sqlite_url: str, topic_prefix: str, inference: Inference, oip_only: OipOnly
) -> None:
    p = topic_prefix
    rules = [
        demo_rule(p),
        demo_rule(p, name="viaoip", source_topic=f"{p}/+/+/raw", target="triton"),
    ]
    triton = InferenceTarget(
        target=oip_only.target,
        timeout_s=3.0,
        protocol="oip",
        models={"curve-quality": OipModel(labels=CURVE_KINDS)},
    )
    config = ingest_config(
        mqtt_url=mqtt_url,
        database_url=sqlite_url,
        inference=inference,
        prefix=p,
        rules=rules,
        targets={"triton": triton},
    )
    async with (
        running(config) as ingest,
        Collector(mqtt_url, f"{p}/+/+/verdict") as out,
        MqttClient(MqttConfig(url=mqtt_url), clean_start=True) as pub,
    ):

        async def connected() -> bool:
            workers = [ingest.controller.worker(n) for n in ("demo", "viaoip")]
            return all(w is not None and w.client.connected for w in workers)

        assert await eventually(connected, timeout=10)
        await pub.publish(f"{p}/A/press-1/telemetry", curve_payload(msg_id="lw", seed=1), qos=1)
        await pub.publish(f"{p}/A/press-1/raw", curve_payload(msg_id="oip", seed=2), qos=1)
        verdicts = {v["msg_id"]: v for v in await out.wait_for(2)}
        assert verdicts["lw"]["label"] == verdicts["oip"]["label"] == "ok"
        assert not ingest.inference.use_oip
        bad = demo_rule(p, name="nowhere", source_topic=f"{p}/+/+/x", target="kserve")
        with pytest.raises(InvalidArgument, match="no inference target named 'kserve'"):
            await ingest.controller.create_rule(bad)
    with pytest.raises(ValueError, match="no target named"):
        ingest_config(
            mqtt_url=mqtt_url,
            database_url=sqlite_url,
            inference=inference,
            prefix=p,
            rules=[demo_rule(p, target="kserve")],
        )
