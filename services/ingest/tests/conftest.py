"""Fixtures of the ingest tests: the real inference service, an ingest instance, MQTT peers.

Everything here is real: the inference service (``linewatch_inference``) serving the
shipped ``models/curve-quality`` model on a free port, the broker given by the root
``mqtt_url`` / ``mosquitto`` fixtures, the databases of ``database_url``.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from linewatch_inference.app import InferenceServer
from linewatch_inference.config import InferenceConfig
from linewatch_inference.metrics import InferenceMetrics
from linewatch_ingest.config import IngestConfig, RuleConfig
from prometheus_client import CollectorRegistry

from linewatch.runtime.config import MqttConfig
from linewatch.runtime.mqtt import MqttClient, MqttMessage
from linewatch_dev.curves import make_curve
from linewatch_dev.testing import free_port, secured_grpc

ROOT = Path(__file__).resolve().parents[3]


class Inference:
    """The real inference service on a fixed free port; can be stopped and restarted."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        self.server: InferenceServer | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        config = InferenceConfig(
            grpc=secured_grpc(port=self.port, grace_s=0.2),
            model_dir=ROOT / "models",
            data_dir=self.data_dir,
            max_queue_delay_ms=1.0,
        )
        self.server = InferenceServer(config, metrics=InferenceMetrics(CollectorRegistry()))
        await self.server.start()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None


@pytest.fixture
async def inference(tmp_path: Path) -> AsyncIterator[Inference]:
    """The inference service with the shipped curve-quality model."""
    service = Inference(tmp_path / "inference")
    await service.start()
    yield service
    await service.stop()


def demo_rule(prefix: str, **changes: Any) -> RuleConfig:
    """The ``make run`` demo rule under a test's topic prefix."""
    fields: dict[str, Any] = {
        "name": "demo",
        "broker": "default",
        "source_topic": f"{prefix}/+/+/telemetry",
        "model": "curve-quality",
        "output_topic": f"{prefix}/{{1}}/{{2}}/verdict",
    }
    fields.update(changes)
    return RuleConfig(**fields)


def ingest_config(
    *,
    mqtt_url: str,
    database_url: str,
    inference: Inference,
    prefix: str,
    rules: Iterable[RuleConfig] | None = None,
    **changes: Any,
) -> IngestConfig:
    """An ingest configuration for one test (own client ids and dead-letter topic)."""
    fields: dict[str, Any] = {
        "grpc": secured_grpc(port=0, grace_s=0.5),
        "client_id": f"lwtest-{uuid.uuid4().hex[:8]}",
        "brokers": {"default": MqttConfig(url=mqtt_url, reconnect_max_delay_s=1.0)},
        "rules": tuple(rules) if rules is not None else (demo_rule(prefix),),
        "inference": {"target": inference.target, "timeout_s": 3.0, "retry_max_delay_s": 0.5},
        "database_url": database_url,
        "deadletter_topic": f"{prefix}/deadletter",
        "batch": {"max_size": 64, "max_delay_ms": 5.0},
        # the webhook receivers of the tests listen on loopback
        "webhook": {"backoff_s": 0.1, "max_attempts": 3, "allowed_networks": "127.0.0.0/8"},
    }
    fields.update(changes)
    return IngestConfig.model_validate(fields)


def curve_payload(
    device_id: str = "press-01",
    *,
    kind: str = "ok",
    msg_id: str | None = None,
    seed: int = 0,
    point: str = "pressure",
    length: int = 256,
) -> bytes:
    """A telemetry message with a realistic curve."""
    values = make_curve(kind, length=length, rng=np.random.default_rng(seed))
    body = {
        "device_id": device_id,
        "point": point,
        "ts": int(time.time() * 1000),
        "values": [round(float(v), 4) for v in values],
        "msg_id": msg_id or uuid.uuid4().hex,
        "attrs": {"line": "A"},
    }
    return json.dumps(body).encode()


class Collector:
    """A subscriber that keeps every message it gets on a filter."""

    def __init__(self, url: str, topic_filter: str) -> None:
        self.client = MqttClient(MqttConfig(url=url), clean_start=True)
        self.filter = topic_filter
        self.messages: list[MqttMessage] = []
        self._event = asyncio.Event()

    async def _on(self, msg: MqttMessage) -> None:
        self.messages.append(msg)
        self._event.set()

    async def __aenter__(self) -> Collector:
        await self.client.subscribe(self.filter, self._on)
        await self.client.connect()
        await asyncio.sleep(0.1)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.disconnect()

    def payloads(self) -> list[dict[str, Any]]:
        return [json.loads(m.payload) for m in self.messages]

    async def wait_for(self, n: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        """Wait until at least ``n`` messages arrived."""
        async with asyncio.timeout(timeout):
            while len(self.messages) < n:
                self._event.clear()
                await self._event.wait()
        return self.payloads()


async def eventually(check: Any, timeout: float = 15.0, interval: float = 0.1) -> Any:
    """Await ``check()`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(interval)
