"""Fixtures of the gateway tests: real gRPC backends and a real gateway.

Every backend is the real service: inference (a subprocess, with the shipped
curve-quality model), ingest, sync and OTA (their ``serve`` in-process, on the test broker,
each with its own SQLite). Tests feed curves through the real pipeline over MQTT and
images through a real HTTP image server; no test backend stands in for a service.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from linewatch_gateway.app import create_app, serve
from linewatch_gateway.clients import Backends
from linewatch_gateway.config import GatewayConfig
from pydantic import SecretStr

from linewatch.runtime.config import GrpcAuthConfig, GrpcCaller, GrpcConfig, MqttConfig
from linewatch.runtime.grpc_auth import callers_env
from linewatch.runtime.mqtt import MqttClient
from linewatch_dev.curves import make_curve
from linewatch_dev.testing import TEST_TOKEN, free_port, operator_client, secured_grpc, wait_port

ROOT = Path(__file__).resolve().parents[3]
WRITE_TOKEN = "t-write"
READ_TOKEN = "t-read"
#: The gateway's and ingest's own gRPC tokens; backends accept them with their roles,
#: and TEST_TOKEN as operator.
GATEWAY_GRPC_TOKEN = "t-grpc-gateway"
INGEST_GRPC_TOKEN = "t-grpc-ingest"
CALLERS = {
    "test": ("operator", TEST_TOKEN),
    "gateway": ("gateway", GATEWAY_GRPC_TOKEN),
    "ingest": ("ingest", INGEST_GRPC_TOKEN),
}


def backend_grpc(**fields: Any) -> GrpcConfig:
    """A backend's gRPC config accepting :data:`CALLERS`."""
    callers = [
        GrpcCaller(name=name, role=role, token=SecretStr(token))
        for name, (role, token) in CALLERS.items()
    ]
    return secured_grpc(auth=GrpcAuthConfig(callers=callers), **fields)  # type: ignore[no-any-return]


@dataclass
class Stack:
    """The backends a gateway under test talks to, and how to feed the real pipeline."""

    addrs: dict[str, str]
    mqtt_url: str
    topic_root: str
    ota_topic_root: str
    ingest_config: Any
    ingest_task: asyncio.Task[None] | None = None
    ingest_stop: asyncio.Event | None = None

    def config(self, **overrides: Any) -> GatewayConfig:
        values: dict[str, Any] = {
            "http_port": 0,
            "tokens": [WRITE_TOKEN],
            "read_tokens": [READ_TOKEN],
            "ingest_addr": self.addrs["ingest"],
            "inference_addr": self.addrs["inference"],
            "sync_addr": self.addrs["sync"],
            "ota_addr": self.addrs["ota"],
            "sse_heartbeat_s": 0.5,
            "sse_reconnect_max_s": 0.5,
            "grpc": GrpcConfig(client=operator_client(GATEWAY_GRPC_TOKEN)),
        }
        values.update(overrides)
        return GatewayConfig(**values)

    async def start_ingest(self) -> None:
        """Start the real ingest service (again) on its port."""
        from linewatch_ingest.app import serve as serve_ingest

        self.ingest_stop = asyncio.Event()
        self.ingest_task = asyncio.create_task(serve_ingest(self.ingest_config, self.ingest_stop))
        await wait_serving(self.ingest_config.grpc.port, self.ingest_task)

    async def stop_ingest(self) -> None:
        """Stop the real ingest service."""
        if self.ingest_stop is not None and self.ingest_task is not None:
            self.ingest_stop.set()
            await asyncio.wait_for(self.ingest_task, 30)
            self.ingest_task = None

    def _mqtt(self) -> MqttClient:
        return MqttClient(MqttConfig(url=self.mqtt_url), client_id=f"gw-sim-{uuid.uuid4().hex[:8]}")

    def topic(self, line: str, device: str) -> str:
        """The telemetry topic the test rule consumes."""
        return f"{self.topic_root}/{line}/{device}/telemetry"

    async def publish(self, items: list[tuple[str, str, str]], *, length: int = 256) -> list[str]:
        """Publish one curve per (device, line, kind) through the real pipeline; msg_ids."""
        rng = np.random.default_rng(7)
        client = MqttClient(
            MqttConfig(url=self.mqtt_url), client_id=f"gw-sim-{uuid.uuid4().hex[:8]}"
        )
        await client.connect()
        ids: list[str] = []
        try:
            for device, line, kind in items:
                msg_id = uuid.uuid4().hex
                values = make_curve(kind, length=length, rng=rng).tolist()
                payload = {
                    "device_id": device,
                    "point": "pressure",
                    "ts": 1763800000123 + len(ids),
                    "values": values,
                    "msg_id": msg_id,
                    "attrs": {"line": line},
                }
                await client.publish(self.topic(line, device), json.dumps(payload))
                ids.append(msg_id)
        finally:
            await client.disconnect()
        return ids

    async def publish_raw(self, topic: str, payload: bytes) -> None:
        """Publish anything (e.g. an invalid message)."""
        client = MqttClient(
            MqttConfig(url=self.mqtt_url), client_id=f"gw-sim-{uuid.uuid4().hex[:8]}"
        )
        await client.connect()
        try:
            await client.publish(topic, payload)
        finally:
            await client.disconnect()


async def _start_with_ready(
    serve: Any, config: Any
) -> tuple[int, asyncio.Task[None], asyncio.Event]:
    """Start a service whose ``serve`` reports its bound port through ``ready``."""
    stop = asyncio.Event()
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(config, stop, ready=ready))
    waiters: set[asyncio.Future[Any]] = {task, ready}
    await asyncio.wait(waiters, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
    return await asyncio.wait_for(ready, 1), task, stop


async def wait_serving(port: int, task: asyncio.Task[None], timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if task.done():
            task.result()
            raise RuntimeError("the server stopped at start")
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            await writer.wait_closed()
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


@pytest.fixture(scope="session")
def inference_addr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The REAL inference service (``python -m linewatch_inference``) with the shipped model.

    A subprocess, once per session: the service registers its Prometheus metrics per
    server instance, so it cannot start twice in one process.
    """
    root = tmp_path_factory.mktemp("inference")
    port = free_port()
    env = {
        **os.environ,
        "LINEWATCH_INFERENCE__GRPC__PORT": str(port),
        "LINEWATCH_INFERENCE__MODEL_DIR": str(ROOT / "models"),
        "LINEWATCH_INFERENCE__DATA_DIR": str(root),
        "LINEWATCH_INFERENCE__ALLOWED_NETWORKS": "127.0.0.0/8",  # the test file servers
        "LINEWATCH_INFERENCE__USE_CUDA": "'off'",
        "LINEWATCH_INFERENCE__LOG_FORMAT": "text",
        "LINEWATCH_INFERENCE__LOG_LEVEL": "WARNING",
        **callers_env("inference", CALLERS),
    }
    proc = subprocess.Popen([sys.executable, "-m", "linewatch_inference"], env=env)
    try:
        wait_port(port, timeout=60)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
async def stack(
    inference_addr: str, mqtt_url: str, topic_prefix: str, tmp_path: Path
) -> AsyncIterator[Stack]:
    """Real inference, ingest and OTA + the sync test backend, each on its own port."""
    from linewatch_ingest.config import AlarmRuleConfig, InferenceTarget, IngestConfig, RuleConfig
    from linewatch_ota.app import serve as serve_ota
    from linewatch_ota.config import OtaConfig
    from linewatch_ota.devices_config import DevicesConfig
    from linewatch_sync.app import serve as serve_sync
    from linewatch_sync.config import SyncConfig

    sync_config = SyncConfig(
        grpc=backend_grpc(host="127.0.0.1", port=0, grace_s=0),
        mqtt=MqttConfig(url=mqtt_url, client_id=f"gw-test-sync-{uuid.uuid4().hex[:8]}"),
        topics=(f"{topic_prefix}/sync",),
        deadletter_topic=f"{topic_prefix}/deadletter",
        cache_dir=tmp_path / "cache",
        data_dir=tmp_path / "sync",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'sync.db'}",
        max_attempts=1,
        backoff_base_s=0.1,
        poll_interval_s=0.1,
        allowed_networks=("127.0.0.0/8",),  # the test image servers
    )
    sync_port, sync_task, sync_stop = await _start_with_ready(serve_sync, sync_config)
    ota_root = f"{topic_prefix}/ota"
    ota_config = OtaConfig(
        grpc=backend_grpc(host="127.0.0.1", port=0, grace_s=0),
        mqtt=MqttConfig(url=mqtt_url, client_id=f"gw-test-ota-{uuid.uuid4().hex[:8]}"),
        topic_root=ota_root,
        data_dir=tmp_path / "ota",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'ota.db'}",
        tick_interval_s=0.2,
        devices=DevicesConfig(
            topic_root=f"{topic_prefix}/devices",
            projector_topic=f"{topic_prefix}/projector-remote-control",
            telemetry_topics=[f"{topic_prefix}/+/+/telemetry"],
            tick_interval_s=0.1,
        ),
    )
    ota_port, ota, stop = await _start_with_ready(serve_ota, ota_config)
    ingest_config = IngestConfig(
        grpc=backend_grpc(
            host="127.0.0.1",
            port=free_port(),
            grace_s=0,
            client=operator_client(INGEST_GRPC_TOKEN),
        ),
        client_id=f"gw-test-ingest-{uuid.uuid4().hex[:8]}",
        brokers={"default": MqttConfig(url=mqtt_url)},
        rules=(
            RuleConfig(
                name="line",
                source_topic=f"{topic_prefix}/+/+/telemetry",
                model="curve-quality",
                output_topic=f"{topic_prefix}/{{1}}/{{2}}/verdict",
                alarm=AlarmRuleConfig(threshold=1, window_s=60),
            ),
        ),
        inference=InferenceTarget(target=inference_addr),
        deadletter_topic=f"{topic_prefix}/deadletter",
        data_dir=tmp_path / "ingest",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'ingest.db'}",
        log_level="WARNING",
    )
    addrs = {
        "ingest": f"127.0.0.1:{ingest_config.grpc.port}",
        "sync": f"127.0.0.1:{sync_port}",
        "ota": f"127.0.0.1:{ota_port}",
        "inference": inference_addr,
    }
    stack = Stack(addrs, mqtt_url, topic_prefix, ota_root, ingest_config)
    await stack.start_ingest()
    try:
        yield stack
    finally:
        await stack.stop_ingest()
        stop.set()
        sync_stop.set()
        await asyncio.wait_for(ota, 30)
        await asyncio.wait_for(sync_task, 30)


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the gateway app (in-process ASGI) over the stack."""
    backends = Backends.connect(stack.config())
    app = create_app(stack.config(), backends)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        yield http
    await backends.close()


@dataclass
class LiveGateway:
    """A real uvicorn gateway on a free port."""

    url: str
    stack: Stack


@pytest.fixture
async def live(stack: Stack) -> AsyncIterator[LiveGateway]:
    """The gateway's ``serve`` on a free port over the stack."""
    port = free_port()
    stop = asyncio.Event()
    task = asyncio.create_task(serve(stack.config(http_port=port), stop))
    await wait_serving(port, task)
    try:
        yield LiveGateway(f"http://127.0.0.1:{port}", stack)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


def auth(token: str = WRITE_TOKEN) -> dict[str, str]:
    """The Authorization header."""
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def write_headers() -> dict[str, str]:
    """Headers of a writer."""
    return auth()


@pytest.fixture
def read_only_headers() -> dict[str, str]:
    """Headers of a read-only token."""
    return auth(READ_TOKEN)


_ = grpc
