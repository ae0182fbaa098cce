"""One trace per message across the hops: a device's MQTT 5 ``traceparent`` continues
through ingest (receive, batch, inference call, publish, archive) and the inference
service (the batch it scores), exported over OTLP to a real receiver."""

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from opentelemetry.sdk.trace import TracerProvider

from linewatch.curves import make_curve
from linewatch.runtime.config import MqttConfig
from linewatch.runtime.mqtt import MqttClient, MqttMessage
from linewatch.runtime.telemetry import inject_user_properties, trace_id_hex
from linewatch.testing import Mosquitto, OtlpReceiver, free_port, wait_port

ROOT = Path(__file__).resolve().parents[2]


async def _spawn(module: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, env={**os.environ, **env}, cwd=ROOT
    )


@pytest.fixture
async def receiver() -> AsyncIterator[OtlpReceiver]:
    rx = OtlpReceiver()
    await rx.start()
    yield rx
    await rx.stop()


@pytest.mark.slow
async def test_one_trace_covers_ingest_and_inference(
    receiver: OtlpReceiver, mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path
) -> None:
    broker = mosquitto.url
    inf_port, ing_port = free_port(), free_port()
    otel = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_TRACES_SAMPLER": "parentbased_always_on",
    }
    ingest_config = tmp_path / "ingest.yaml"
    ingest_config.write_text(
        json.dumps(
            {
                "grpc": {"port": ing_port},
                "data_dir": str(tmp_path / "ingest"),
                "brokers": {"default": {"url": broker}},
                "inference": {"target": f"127.0.0.1:{inf_port}"},
                "rules": [
                    {
                        "name": "traced",
                        "source_topic": f"{topic_prefix}/+/+/telemetry",
                        "model": "curve-quality",
                        "output_topic": f"{topic_prefix}/{{1}}/{{2}}/verdict",
                    }
                ],
            }
        )
    )
    inference = await _spawn(
        "linewatch_inference",
        {
            **otel,
            "LINEWATCH_INFERENCE__GRPC__PORT": str(inf_port),
            "LINEWATCH_INFERENCE__DATA_DIR": str(tmp_path / "inference"),
            "LINEWATCH_INFERENCE__MODEL_DIR": str(ROOT / "models"),
        },
    )
    ingest = await _spawn(
        "linewatch_ingest", {**otel, "LINEWATCH_INGEST_CONFIG": str(ingest_config)}
    )
    try:
        await asyncio.to_thread(wait_port, inf_port, 60)
        await asyncio.to_thread(wait_port, ing_port, 60)

        verdicts: asyncio.Queue[MqttMessage] = asyncio.Queue()

        async def on_verdict(message: MqttMessage) -> None:
            await verdicts.put(message)

        device_tracer = TracerProvider().get_tracer("device")
        values = make_curve("ok", length=300, rng=np.random.default_rng(1))
        payload = json.dumps(
            {
                "device_id": "press-07",
                "point": "pressure",
                "ts": 1763800000123,
                "values": [float(v) for v in values],
                "msg_id": "traced-1",
            }
        ).encode()
        async with MqttClient(MqttConfig(url=broker), clean_start=True) as device:
            await device.subscribe(f"{topic_prefix}/+/+/verdict", on_verdict)
            await asyncio.sleep(1.0)  # ingest subscribes after it starts listening
            with device_tracer.start_as_current_span("device publish") as span:
                trace_id = trace_id_hex(span)
                await device.publish(
                    f"{topic_prefix}/A/press-07/telemetry",
                    payload,
                    user_properties=inject_user_properties(),
                )
            verdict = await asyncio.wait_for(verdicts.get(), 30)
        body = json.loads(verdict.payload)
        assert body["trace_id"] == trace_id
        assert verdict.user_property("traceparent"), "the verdict carries its own traceparent"

        wanted = {"linewatch-ingest", "linewatch-inference"}
        for _ in range(100):
            services = {s.service for s in receiver.traces().get(trace_id, [])}
            if wanted <= services:
                break
            await asyncio.sleep(0.1)
        spans = receiver.traces().get(trace_id, [])
        services = {s.service for s in spans}
        assert wanted <= services, [(s.service, s.name) for s in spans]
        names = {s.name for s in spans}
        assert any("PredictStream" in n for n in names), names
        assert {"ingest batch", "inference call"} <= names, names
    finally:
        for proc in (ingest, inference):
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 15)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
