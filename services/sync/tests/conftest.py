"""Fixtures of the sync service tests: a real image server and a real running service."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from linewatch_sync.app import serve
from linewatch_sync.config import SyncConfig

from linewatch.runtime.config import MqttConfig
from linewatch.v1 import sync_pb2_grpc
from linewatch_dev.sync_testing import ImageServer, RunningSync, StartSync
from linewatch_dev.testing import operator_channel, secured_grpc


@pytest.fixture
async def image_server() -> AsyncIterator[ImageServer]:
    """A real HTTP image server on a free port."""
    async with ImageServer() as server:
        yield server


@pytest.fixture
async def start_sync(
    database_url: str, mqtt_url: str, topic_prefix: str, tmp_path: Path
) -> AsyncIterator[StartSync]:
    """Start the sync service (real broker, real database); stopped at teardown."""
    running: list[RunningSync] = []

    async def start(**overrides: Any) -> RunningSync:
        fields: dict[str, Any] = {
            "database_url": database_url,
            "data_dir": tmp_path / "data",
            "cache_dir": tmp_path / "cache",
            "grpc": secured_grpc(port=0),
            "mqtt": MqttConfig(url=mqtt_url, client_id=f"sync-{topic_prefix.rsplit('/', 1)[-1]}"),
            "topics": (f"{topic_prefix}/sync", f"{topic_prefix}/sync-single-work"),
            "deadletter_topic": f"{topic_prefix}/deadletter",
            "worker_id": "test-worker",
            "concurrency": 8,
            "per_host_concurrency": 8,
            "backoff_base_s": 0.05,
            "backoff_cap_s": 0.2,
            "poll_interval_s": 0.05,
            "total_timeout_s": 5.0,
            "read_timeout_s": 2.0,
            "lease_s": 10.0,
            "max_attempts": 3,
            "allowed_networks": ("127.0.0.0/8",),  # the test image servers
        }
        fields.update(overrides)
        config = SyncConfig(**fields)
        stop = asyncio.Event()
        ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(serve(config, stop, ready=ready))
        async with asyncio.timeout(30):
            while not ready.done():
                if task.done():
                    task.result()
                await asyncio.sleep(0.02)
        port = ready.result()
        channel = operator_channel(f"127.0.0.1:{port}")
        handle = RunningSync(
            config, port, sync_pb2_grpc.SyncServiceStub(channel), stop, task, channel
        )
        running.append(handle)
        return handle

    yield start
    for handle in running:
        if not handle.task.done():
            with contextlib.suppress(Exception):
                await handle.shutdown()
