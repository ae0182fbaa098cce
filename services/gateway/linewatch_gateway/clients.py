"""grpc.aio channels to the four backends, and the one way routes call them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from linewatch.runtime.grpc_auth import open_channel
from linewatch.v1 import (
    devices_pb2_grpc,
    inference_pb2_grpc,
    ingest_pb2_grpc,
    ota_pb2_grpc,
    storage_pb2_grpc,
    sync_pb2_grpc,
)
from linewatch_gateway.config import GatewayConfig
from linewatch_gateway.errors import from_grpc

__all__ = ["BACKENDS", "STORAGE_BACKENDS", "Backends"]

T = TypeVar("T")

#: The backends, in the order /readyz reports them.
BACKENDS = ("ingest", "inference", "sync", "ota")
#: The backends with a database (StorageService).
STORAGE_BACKENDS = ("ingest", "sync", "ota")

"""Keepalive as the servers allow it (linewatch.runtime.grpc_options)."""


@dataclass
class Backends:
    """Stubs of the four services over one channel each."""

    ingest: Any
    inference: Any
    sync: Any
    ota: Any
    #: The OTA service's DeviceService (commands and inventory), on the OTA channel.
    devices: Any = None
    timeout_s: float = 10.0
    channels: dict[str, grpc.aio.Channel] = field(default_factory=dict)
    #: StorageService of each service with a database (ingest, sync, ota), by name.
    storage: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def connect(cls, config: GatewayConfig) -> Backends:
        """Open (lazily connecting) channels to the configured addresses, sending the
        gateway's own token (``grpc.client``) over TLS when configured."""
        addrs = {
            "ingest": config.ingest_addr,
            "inference": config.inference_addr,
            "sync": config.sync_addr,
            "ota": config.ota_addr,
        }
        channels = {name: open_channel(addr, config.grpc.client) for name, addr in addrs.items()}
        return cls(
            ingest=ingest_pb2_grpc.IngestServiceStub(channels["ingest"]),
            inference=inference_pb2_grpc.InferenceServiceStub(channels["inference"]),
            sync=sync_pb2_grpc.SyncServiceStub(channels["sync"]),
            ota=ota_pb2_grpc.OtaServiceStub(channels["ota"]),
            devices=devices_pb2_grpc.DeviceServiceStub(channels["ota"]),
            timeout_s=config.backend_timeout_s,
            channels=channels,
            storage={
                name: storage_pb2_grpc.StorageServiceStub(channels[name])
                for name in STORAGE_BACKENDS
            },
        )

    async def call(self, backend: str, method: Callable[..., Awaitable[T]], request: Any) -> T:
        """One unary call with the configured deadline; failures become HTTP errors."""
        try:
            return await method(request, timeout=self.timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise from_grpc(exc, backend) from exc

    async def health(self, timeout: float = 2.0) -> dict[str, str]:
        """Each backend's ``grpc.health.v1`` status (``"serving"`` or why not)."""

        async def one(name: str) -> str:
            stub = health_pb2_grpc.HealthStub(self.channels[name])
            try:
                resp = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
            except grpc.aio.AioRpcError as exc:
                return f"down: {exc.code().name.lower()}"
            if resp.status != health_pb2.HealthCheckResponse.SERVING:
                return "not serving"
            return "serving"

        results = await asyncio.gather(*(one(name) for name in BACKENDS))
        return dict(zip(BACKENDS, results, strict=True))

    async def close(self) -> None:
        """Close every channel."""
        for channel in self.channels.values():
            await channel.close()
