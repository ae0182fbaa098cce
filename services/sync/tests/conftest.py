"""Fixtures of the sync service tests: a real image server and a real running service."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from linewatch.runtime.config import GrpcConfig, MqttConfig
from linewatch.v1 import sync_pb2, sync_pb2_grpc
from linewatch_sync.app import serve
from linewatch_sync.config import SyncConfig
from linewatch_sync.testing import ImageServer


@pytest.fixture
async def image_server() -> AsyncIterator[ImageServer]:
    """A real HTTP image server on a free port."""
    async with ImageServer() as server:
        yield server


@dataclass
class RunningSync:
    """One running sync service."""

    config: SyncConfig
    port: int
    stub: sync_pb2_grpc.SyncServiceStub
    stop: asyncio.Event
    task: asyncio.Task[None]
    channel: grpc.aio.Channel

    async def shutdown(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 30)
        await self.channel.close()

    async def wait_state(
        self, job_id: str, states: set[int], timeout: float = 20.0
    ) -> sync_pb2.SyncJob:
        """Poll GetJob until the job is in one of ``states``."""
        async with asyncio.timeout(timeout):
            while True:
                job = (await self.stub.GetJob(sync_pb2.GetJobRequest(id=job_id))).job
                if job.state in states:
                    return job
                await asyncio.sleep(0.05)

    async def wait_jobs(
        self, count: int, state: int = sync_pb2.JOB_STATE_DONE, timeout: float = 30.0
    ) -> list[sync_pb2.SyncJob]:
        """Poll ListJobs until ``count`` jobs are in ``state``."""
        async with asyncio.timeout(timeout):
            while True:
                resp = await self.stub.ListJobs(
                    sync_pb2.ListJobsRequest(state=state, page=sync_pb2.PageRequest(page_size=1000))
                )
                if len(resp.jobs) >= count:
                    return list(resp.jobs)
                await asyncio.sleep(0.05)


StartSync = Callable[..., Awaitable[RunningSync]]


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
            "grpc": GrpcConfig(port=0),
            "mqtt": MqttConfig(url=mqtt_url),
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
        }
        fields.update(overrides)
        config = SyncConfig(**fields)
        stop = asyncio.Event()
        ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(serve(config, stop, ready=ready))
        done, _ = await asyncio.wait({task, ready}, timeout=30, return_when="FIRST_COMPLETED")
        if task in done:
            task.result()
        port = ready.result()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
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
