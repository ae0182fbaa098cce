"""One trace per message across the hops: a device's MQTT 5 ``traceparent`` continues
through ingest (receive, batch, inference call, publish, archive) and the inference
service (the batch it scores); through OTA (a device request and the metadata it gets
back, which carries the trace on); through sync (a message of URLs and each download,
later, from the job queue). Exported over OTLP to a real receiver."""

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from opentelemetry.sdk.trace import TracerProvider

from linewatch.runtime.config import MqttConfig
from linewatch.runtime.mqtt import MqttClient, MqttMessage
from linewatch.runtime.telemetry import inject_user_properties, trace_id_hex
from linewatch_dev.curves import make_curve
from linewatch_dev.testing import (
    Mosquitto,
    OtlpReceiver,
    free_port,
    operator_channel,
    operator_env,
    operator_grpc_dict,
    wait_port,
)

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


async def _first_sse_verdict(url: str, listening: asyncio.Event) -> dict[str, object]:
    """Like a browser: wait for the verdict stream, return the first verdict pushed."""
    async with httpx.AsyncClient(timeout=httpx.Timeout(30, read=None)) as http:
        async with asyncio.timeout(30):
            while True:  # the gateway holds the upstream verdict stream (readyz says)
                ready = (await http.get(f"{url}/readyz")).json()
                if ready.get("streams", {}).get("verdicts"):
                    break
                await asyncio.sleep(0.1)
        # ingest registers the gateway's subscription just after the stream opens; a
        # verdict published before that is not streamed (live only, never replayed)
        await asyncio.sleep(0.5)
        async with http.stream("GET", f"{url}/v1/stream/verdicts") as resp:
            listening.set()
            async for line in resp.aiter_lines():
                if line.startswith("data: "):
                    data: dict[str, object] = json.loads(line[6:])
                    return data
    raise AssertionError("the verdict stream ended")


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
                "grpc": operator_grpc_dict(port=ing_port),
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
            **operator_env("inference"),
            "LINEWATCH_INFERENCE__DATA_DIR": str(tmp_path / "inference"),
            "LINEWATCH_INFERENCE__MODEL_DIR": str(ROOT / "models"),
        },
    )
    ingest = await _spawn(
        "linewatch_ingest", {**otel, "LINEWATCH_INGEST_CONFIG": str(ingest_config)}
    )
    gw_port = free_port()
    gateway = await _spawn(
        "linewatch_gateway",
        {
            **otel,
            "LINEWATCH_GATEWAY__HTTP_PORT": str(gw_port),
            **operator_env("gateway"),
            "LINEWATCH_GATEWAY__INGEST_ADDR": f"127.0.0.1:{ing_port}",
            "LINEWATCH_GATEWAY__INFERENCE_ADDR": f"127.0.0.1:{inf_port}",
        },
    )
    try:
        await asyncio.to_thread(wait_port, inf_port, 60)
        await asyncio.to_thread(wait_port, ing_port, 60)
        await asyncio.to_thread(wait_port, gw_port, 60)
        listening = asyncio.Event()
        browser = asyncio.create_task(_first_sse_verdict(f"http://127.0.0.1:{gw_port}", listening))
        await asyncio.wait_for(listening.wait(), 40)

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
        pushed = await asyncio.wait_for(browser, 30)
        assert pushed["msg_id"] == "traced-1"
        assert "traceparent" not in pushed
        body = json.loads(verdict.payload)
        assert body["trace_id"] == trace_id
        assert verdict.user_property("traceparent"), "the verdict carries its own traceparent"

        wanted = {"linewatch-ingest", "linewatch-inference", "linewatch-gateway"}
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
        assert {"ingest batch", "inference call", "sse push verdicts"} <= names, names
    finally:
        for proc in (gateway, ingest, inference):
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 15)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


async def _stop(*procs: asyncio.subprocess.Process) -> None:
    for proc in procs:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def _spans_of(receiver: OtlpReceiver, trace_id: str, names: set[str]) -> set[str]:
    """Wait until spans with all these names arrived in the trace; the names seen."""
    seen: set[str] = set()
    for _ in range(100):
        seen = {s.name for s in receiver.traces().get(trace_id, [])}
        if names <= seen:
            break
        await asyncio.sleep(0.1)
    return seen


OTEL = {
    "OTEL_BSP_SCHEDULE_DELAY": "100",
    "OTEL_TRACES_SAMPLER": "parentbased_always_on",
}


@pytest.mark.slow
async def test_one_trace_covers_an_ota_device_request_and_the_metadata_sent_back(
    receiver: OtlpReceiver, mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path
) -> None:
    from linewatch.v1 import ota_pb2, ota_pb2_grpc

    port = free_port()
    root = f"{topic_prefix}/ota"
    ota = await _spawn(
        "linewatch_ota",
        {
            **OTEL,
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "LINEWATCH_OTA__GRPC__PORT": str(port),
            **operator_env("ota"),
            "LINEWATCH_OTA__DATA_DIR": str(tmp_path / "ota"),
            "LINEWATCH_OTA__MQTT__URL": mosquitto.url,
            "LINEWATCH_OTA__TOPIC_ROOT": root,
            "LINEWATCH_OTA__TICK_INTERVAL_S": "0.2",
        },
    )
    metadata: asyncio.Queue[MqttMessage] = asyncio.Queue()

    async def on_metadata(message: MqttMessage) -> None:
        await metadata.put(message)

    try:
        await asyncio.to_thread(wait_port, port, 60)
        async with (
            operator_channel(f"127.0.0.1:{port}") as channel,
            MqttClient(MqttConfig(url=mosquitto.url), clean_start=True) as device,
        ):
            stub = ota_pb2_grpc.OtaServiceStub(channel)
            await device.subscribe(f"{root}/dev-1/metadata", on_metadata)

            async def upload() -> AsyncIterator[ota_pb2.UploadFirmwareRequest]:
                yield ota_pb2.UploadFirmwareRequest(
                    metadata=ota_pb2.UploadFirmwareRequest.Metadata(
                        product="press", version="1.3.0", filename="fw.bin"
                    )
                )
                yield ota_pb2.UploadFirmwareRequest(chunk=b"\x7fELF" + bytes(5000))

            firmware = (await stub.UploadFirmware(upload())).firmware
            await stub.CreateRollout(
                ota_pb2.CreateRolloutRequest(firmware_id=firmware.id, devices=["dev-1"])
            )
            await asyncio.wait_for(metadata.get(), 30)  # the rollout's own notification
            # the device (re)boots and asks: its trace continues through OTA and back
            device_tracer = TracerProvider().get_tracer("device")
            with device_tracer.start_as_current_span("device request") as span:
                trace_id = trace_id_hex(span)
                await device.publish(
                    f"{root}/dev-1/request",
                    json.dumps({"current_version": "1.2.0"}),
                    user_properties=inject_user_properties(),
                )
            resent = await asyncio.wait_for(metadata.get(), 30)
        assert trace_id in (resent.user_property("traceparent") or "")
        wanted = {f"{root}/dev-1/request process", f"{root}/dev-1/metadata publish"}
        names = await _spans_of(receiver, trace_id, wanted)
        assert wanted <= names, names
        services = {s.service for s in receiver.traces()[trace_id]}
        assert "linewatch-ota" in services
    finally:
        await _stop(ota)


@pytest.mark.slow
async def test_one_trace_covers_a_sync_message_and_its_download(
    receiver: OtlpReceiver, mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path
) -> None:
    from linewatch_dev.sync_testing import ImageServer, Route, image_bytes

    port = free_port()
    topic = f"{topic_prefix}/sync"
    images = ImageServer(port=0)
    images.routes["/img/traced.jpg"] = Route(body=image_bytes(1, 4096))
    await images.start()
    sync = await _spawn(
        "linewatch_sync",
        {
            **OTEL,
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "LINEWATCH_SYNC__GRPC__PORT": str(port),
            **operator_env("sync"),
            "LINEWATCH_SYNC__DATA_DIR": str(tmp_path / "sync"),
            "LINEWATCH_SYNC__CACHE_DIR": str(tmp_path / "cache"),
            "LINEWATCH_SYNC__MQTT__URL": mosquitto.url,
            "LINEWATCH_SYNC__TOPICS": json.dumps([topic]),
            "LINEWATCH_SYNC__POLL_INTERVAL_S": "0.1",
            "LINEWATCH_SYNC__ALLOWED_NETWORKS": "127.0.0.0/8",  # the test image server
        },
    )
    try:
        await asyncio.to_thread(wait_port, port, 60)
        async with MqttClient(MqttConfig(url=mosquitto.url), clean_start=True) as device:
            await asyncio.sleep(1.0)  # sync subscribes after it starts listening
            device_tracer = TracerProvider().get_tracer("device")
            with device_tracer.start_as_current_span("request images") as span:
                trace_id = trace_id_hex(span)
                await device.publish(
                    topic,
                    json.dumps({"urls": [f"{images.base_url}/img/traced.jpg"]}),
                    user_properties=inject_user_properties(),
                )
        wanted = {f"{topic} process", "sync download"}
        names = await _spans_of(receiver, trace_id, wanted)
        assert wanted <= names, names
        assert {s.service for s in receiver.traces()[trace_id]} == {"linewatch-sync"}
    finally:
        await _stop(sync)
        await images.stop()
