"""Helpers for tests of the OTA service: run it in-process on free ports, wait for states.

Not imported by the service at run time.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from linewatch_ota.app import serve
from linewatch_ota.config import OtaConfig
from linewatch_ota.download_server import DownloadServer
from linewatch_ota.store import DeviceRow

from linewatch.runtime.config import MqttConfig
from linewatch.runtime.db import Database
from linewatch.v1 import ota_pb2, ota_pb2_grpc
from linewatch_dev.ota_simulator import Behaviour, SimulatedFleet, fetch_signing_keys
from linewatch_dev.testing import (
    TEST_TOKEN,
    free_port,
    operator_channel,
    operator_client,
    secured_grpc,
)

__all__ = ["OtaRunner", "ota_process_config", "until"]


async def until(
    predicate: Callable[[], Awaitable[bool]], *, timeout: float = 30.0, what: str = "condition"
) -> None:
    """Poll ``predicate`` until true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def ota_process_config(
    *,
    grpc: dict[str, Any],
    data_dir: Path,
    database_url: str,
    mqtt_url: str,
    client_id: str,
    topic_root: str,
    public_base_url: str,
) -> dict[str, Any]:
    """The config file of one OTA replica as the chart runs several: one database, one
    data volume (firmware store and signing key) and a shared subscription for devices."""
    return {
        "log_level": "WARNING",
        "grpc": grpc,
        "data_dir": str(data_dir),
        "database_url": database_url,
        "mqtt": {"url": mqtt_url, "client_id": client_id, "reconnect_max_delay_s": 1.0},
        "shared_group": "linewatch",
        "topic_root": topic_root,
        "deadletter_topic": f"{topic_root}/deadletter",
        "public_base_url": public_base_url,
        "chunk_size": 16384,
        "tick_interval_s": 0.2,
        "default_timeout_s": 10,
        "default_max_retries": 5,
        "max_active_updates": 64,
    }


class OtaRunner:
    """Starts and stops the OTA service (same ports, data and MQTT session each time)."""

    def __init__(
        self,
        *,
        tmp_path: Path,
        database_url: str,
        mqtt_url: str,
        topic_root: str,
        **overrides: Any,
    ):
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.mqtt_url = mqtt_url
        self.topic_root = topic_root
        self.config = OtaConfig(
            grpc=secured_grpc(host="127.0.0.1", port=self.grpc_port, grace_s=0.5),
            mqtt=MqttConfig(url=mqtt_url, client_id=f"ota-test-{uuid.uuid4().hex[:10]}"),
            database_url=database_url,
            data_dir=tmp_path / "data",
            topic_root=topic_root,
            deadletter_topic=f"{topic_root}/deadletter",
            public_base_url=f"http://127.0.0.1:{self.http_port}",
            chunk_size=65536,
            tick_interval_s=0.1,
            max_firmware_mb=2,
            default_timeout_s=30,
            default_max_retries=2,
            groups={"line-a": ["grp-1", "grp-2"]},
            **overrides,
        )
        self._stop: asyncio.Event | None = None
        self._public_key = ""
        self._keys: dict[str, str] = {}
        self._db: Database | None = None
        self._task: asyncio.Task[None] | None = None
        self.downloads = DownloadServer(
            grpc_target=f"127.0.0.1:{self.grpc_port}", port=self.http_port, client=operator_client()
        )
        self.channel = operator_channel(f"127.0.0.1:{self.grpc_port}")
        self.stub = ota_pb2_grpc.OtaServiceStub(self.channel)

    async def start(self) -> None:
        self._stop = asyncio.Event()
        ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(serve(self.config, self._stop, ready=ready))
        waiters: set[asyncio.Future[Any]] = {self._task, ready}
        done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        if self._task in done:
            self._task.result()
        if self.downloads.port != self.http_port or self.downloads._server is None:
            await self.downloads.start()

    async def stop(self) -> None:
        if self._stop is not None and self._task is not None:
            self._stop.set()
            await self._task
            self._task = None

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
        await self.stop()
        await self.downloads.stop()
        await self.channel.close()

    async def upload(
        self,
        data: bytes,
        version: str = "1.3.0",
        product: str = "press",
        *,
        hardware: tuple[str, ...] = (),
        signature: str = "",
        security_counter: int = 0,
    ) -> Any:
        async def requests() -> AsyncIterator[ota_pb2.UploadFirmwareRequest]:
            yield ota_pb2.UploadFirmwareRequest(
                metadata=ota_pb2.UploadFirmwareRequest.Metadata(
                    product=product,
                    version=version,
                    filename="fw.bin",
                    hardware=hardware,
                    signature=signature,
                    security_counter=security_counter,
                )
            )
            for i in range(0, len(data), 100_000):
                yield ota_pb2.UploadFirmwareRequest(chunk=data[i : i + 100_000])

        reply = await self.stub.UploadFirmware(requests())
        return reply.firmware

    async def rollout(self, firmware_id: str, devices: list[str], **kw: Any) -> Any:
        reply = await self.stub.CreateRollout(
            ota_pb2.CreateRolloutRequest(firmware_id=firmware_id, devices=devices, **kw)
        )
        return reply.rollout

    async def get_rollout(self, rollout_id: str) -> Any:
        return (await self.stub.GetRollout(ota_pb2.GetRolloutRequest(id=rollout_id))).rollout

    async def updates(self, device_id: str) -> list[Any]:
        reply = await self.stub.GetDeviceUpdates(
            ota_pb2.GetDeviceUpdatesRequest(device_id=device_id)
        )
        return list(reply.updates)

    async def wait_rollout(self, rollout_id: str, state: int, timeout: float = 30.0) -> Any:
        async def check() -> bool:
            return bool((await self.get_rollout(rollout_id)).state == state)

        await until(check, timeout=timeout, what=f"rollout state {state}")
        return await self.get_rollout(rollout_id)

    async def device_known(self, device_id: str) -> bool:
        """Whether the service has recorded a ``request`` of ``device_id``."""
        if self._db is None:
            self._db = Database(self.config.database_url)
        async with self._db.session() as session:
            return await session.get(DeviceRow, device_id) is not None

    @property
    def target(self) -> str:
        """The gRPC address."""
        return f"127.0.0.1:{self.grpc_port}"

    async def public_key(self) -> str:
        """The signing public key (kept: it does not change across restarts)."""
        if not self._public_key:
            reply = await self.stub.GetSigningKey(ota_pb2.GetSigningKeyRequest())
            self._public_key = str(reply.public_key)
            self._keys = await fetch_signing_keys(self.target, token=TEST_TOKEN)
        return self._public_key

    async def published_keys(self) -> dict[str, str]:
        """Every key devices trust (kept, like :meth:`public_key`)."""
        await self.public_key()
        return self._keys

    async def fleet(
        self,
        devices: list[str],
        behaviours: dict[str, Behaviour] | None = None,
        *,
        current_version: str = "1.0.0",
        hw: str = "sim",
        keys: dict[str, str] | None = None,
    ) -> SimulatedFleet:
        """Simulated devices that trust the published keys (or ``keys``)."""
        fleet = SimulatedFleet(
            mqtt_url=self.mqtt_url,
            device_ids=devices,
            public_key=await self.public_key(),
            keys=keys if keys is not None else await self.published_keys(),
            topic_root=self.topic_root,
            behaviours=behaviours,
            current_version=current_version,
            hw=hw,
            concurrency=8,
        )
        await fleet.start()
        return fleet
